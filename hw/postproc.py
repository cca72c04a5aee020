"""Requantization units (ARCHITECTURE §3, §6): BN multiply-add with rounding, then the clamp.

BnUnit:  t = S*M + B,  u = (t + 2^(F-1)) >> F   (round half up)
ActUnit: y = clamp(u + z_out, lo, hi)

Both take `params.lanes` output channels per beat and carry a `tag` unchanged. Their config
inputs (`shift`; `zero_point`, `lo`, `hi`) are static during a layer: change them only while the
unit holds no beat.
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.spec import MAX_SHIFT
from hw.host import TABLE_B, TABLE_M
from hw.params import EngineParams
from hw.pipeline import delay, stall_control


class BnUnit(wiring.Component):
    """i: {s: L x signed(acc_width), m: L x signed(mult_width), b: L x signed(t_width), tag}
    -> o: {u: L x signed(t_width), tag}; config `shift` = F in 1..62.

    Four stages (`latency` = 4): operands in (they reach the unit through the mux of the table
    stage and the add path), multiply, add, round. The rounding uses
    (t + 2^(F-1)) >> F = ((t >> (F-1)) + 1) >> 1, which needs neither the 2^(F-1) constant nor
    a sum wider than t (F-1 may exceed t's width: the shift then leaves only the sign).
    """

    latency = 4

    @staticmethod
    def table_entry(params: EngineParams) -> data.StructLayout:
        """One output channel's TABLE entry: M and B (§6), as the host protocol packs them."""
        return data.StructLayout({"m": signed(TABLE_M.stop - TABLE_M.start),
                                  "b": signed(TABLE_B.stop - TABLE_B.start)})

    def __init__(self, params: EngineParams, tag_layout):
        self.params = params
        lanes, t_shape = params.lanes, signed(params.t_width)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "s": data.ArrayLayout(signed(params.acc_width), lanes),
                "m": data.ArrayLayout(signed(params.mult_width), lanes),
                "b": data.ArrayLayout(t_shape, lanes),
                "tag": tag_layout,
            }))),
            "o": Out(stream.Signature(data.StructLayout({
                "u": data.ArrayLayout(t_shape, lanes),
                "tag": tag_layout,
            }))),
            "shift": In(unsigned(MAX_SHIFT.bit_length())),
        })

    def elaborate(self, platform):
        m = Module()
        en = stall_control(m, self.i, self.o, self.latency)
        t_shape = signed(self.params.t_width)
        shift_less_one = Signal.like(self.shift)
        m.d.comb += shift_less_one.eq(self.shift - 1)
        for k in range(self.params.lanes):
            s, mult = (delay(m, en, v[k], 1, name=f"{n}{k}") for n, v in (("s", self.i.p.s), ("m", self.i.p.m)))
            product = delay(m, en, s * mult, 1, name=f"product{k}")
            b = delay(m, en, self.i.p.b[k], 2, name=f"b{k}")
            t = delay(m, en, product + b, 1, name=f"t{k}", shape=t_shape)
            u = delay(m, en, ((t >> shift_less_one) + 1) >> 1, 1, name=f"u{k}", shape=t_shape)
            m.d.comb += self.o.p.u[k].eq(u)
        m.d.comb += self.o.p.tag.eq(delay(m, en, self.i.p.tag, self.latency, name="tag"))
        return m


class ActUnit(wiring.Component):
    """i: {u: L x signed(t_width), tag} -> o: {y: L x unsigned(a_bits), tag};
    config `zero_point`, `lo`, `hi` (unsigned(a_bits)).

    y = min(max(u + z_out, lo), hi), compared at full width so that any u clamps correctly (and
    lo > hi gives hi, as torch.clamp does). One stage (`latency` = 1).
    """

    latency = 1

    def __init__(self, params: EngineParams, tag_layout):
        self.params = params
        code = unsigned(params.a_bits)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "u": data.ArrayLayout(signed(params.t_width), params.lanes),
                "tag": tag_layout,
            }))),
            "o": Out(stream.Signature(data.StructLayout({
                "y": data.ArrayLayout(code, params.lanes),
                "tag": tag_layout,
            }))),
            "zero_point": In(code),
            "lo": In(code),
            "hi": In(code),
        })

    def elaborate(self, platform):
        m = Module()
        en = stall_control(m, self.i, self.o, self.latency)
        y = Signal(self.o.p.shape())
        m.d.comb += y.tag.eq(self.i.p.tag)
        for k in range(self.params.lanes):
            v = self.i.p.u[k] + self.zero_point
            above_lo = Mux(v < self.lo, self.lo, v)
            m.d.comb += y.y[k].eq(Mux(above_lo > self.hi, self.hi, above_lo))
        m.d.comb += self.o.p.eq(delay(m, en, y, self.latency, name="y"))
        return m
