"""IOSO unit (ARCHITECTURE §2, §6): the K-tile's input-channel scale, by a shift and an add.

A K-tile lies in one channel group (§4), so one code s in {-1, 0, +1} scales the whole partial
sum vector: q = (p << n) + s*p = p * (2^n + s), exactly, with no multiplier: s only selects the
addend +p, 0 or -p (the non-code -2 also selects 0), and -p is ~p with the adder's carry in.

The unit is combinational: it sits between the array's output registers and the accumulator's
input register, one adder deep, so it adds no cycle and no register (`latency_of` = 0; built
with `params.isg_register` it ends in a register stage of its own, one cycle, ARCHITECTURE §6
says what the timing report measured of each). Built with
`params.isg` False it is the engine "without IOSO": a wire, q = p, `s` ignored; comparing the two
builds measures what the unit costs.

Built with `params.isg_unit == "multiplier"` it is the area report's ICWQ variant: what ISG
would cost with arbitrary group scales instead of 1 ± 2^-n. The code's two bits index one of
GROUPS scales g (unsigned, W_M bits, gamma = g / 2^(W_M-1) in [0, 2)) and
q = (p * g) >> (W_M - 1 - n), the same 2^n-scaled output as the shift-add, so accumulator and
BN unit stay as they are: a multiplier per column replaces an adder, nothing else changes.
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.params import EngineParams
from hw.pipeline import delay, stall_control

GROUPS = 4      # group scales of the multiplier variant, indexed by the code's two bits


def scale_write_layout(params: EngineParams) -> data.StructLayout:
    """The multiplier variant's scale write port: `en` writes `value` as group `group`'s scale."""
    return data.StructLayout({"en": 1, "group": range(GROUPS), "value": unsigned(params.mult_width)})


class IosoUnit(wiring.Component):
    """i: {p: C x signed(psum_width), s: signed(2), tag} -> o: {q: C x signed(ioso_width), tag}.

    One vector per cycle; combinational (handshake and `tag` passed through) unless built with
    `isg_register`. The multiplier variant adds the config port `scale` (write a group scale
    between layers).
    """

    @staticmethod
    def latency_of(params: EngineParams) -> int:
        return int(params.isg_register)

    def __init__(self, params: EngineParams, tag_layout):
        self.params = params
        members = {
            "i": In(stream.Signature(data.StructLayout({
                "p": data.ArrayLayout(signed(params.psum_width), params.cols),
                "s": signed(2),
                "tag": tag_layout,
            }))),
            "o": Out(stream.Signature(data.StructLayout({
                "q": data.ArrayLayout(signed(params.ioso_width), params.cols),
                "tag": tag_layout,
            }))),
        }
        if self.multiplier:
            members["scale"] = In(scale_write_layout(params))
        super().__init__(members)

    @property
    def multiplier(self) -> bool:
        return self.params.isg and self.params.isg_unit == "multiplier"

    def _scale(self, v, s, g):
        """q of one column: the group multiplier's product (g the group's scale), the
        shift-add (-v is ~v with a carry in), or v itself without ISG."""
        p = self.params
        if g is not None:
            return (v * g) >> (p.mult_width - 1 - p.isg_shift)
        if p.isg:
            negate = s[1] & s[0]            # s = -1
            return (v << p.isg_shift) + Mux(s[0], Mux(negate, ~v, v), 0) + negate
        return v

    def _scale_table(self, m: Module, s):
        """The multiplier variant's group scale for code `s` (registers written through `scale`)."""
        scales = [Signal(unsigned(self.params.mult_width), name=f"scale{g}") for g in range(GROUPS)]
        with m.If(self.scale.en):
            with m.Switch(self.scale.group):
                for g, reg in enumerate(scales):
                    with m.Case(g):
                        m.d.sync += reg.eq(self.scale.value)
        selected = Signal(unsigned(self.params.mult_width))
        with m.Switch(s.as_unsigned()):
            for g, reg in enumerate(scales):
                with m.Case(g):
                    m.d.comb += selected.eq(reg)
        return selected

    def elaborate(self, platform):
        m = Module()
        g = self._scale_table(m, self.i.p.s) if self.multiplier else None
        q = Signal.like(self.o.p.q)
        for c in range(self.params.cols):
            m.d.comb += q[c].eq(self._scale(self.i.p.p[c], self.i.p.s, g))
        stages = self.latency_of(self.params)
        if stages:
            en = stall_control(m, self.i, self.o, stages)
            m.d.comb += [self.o.p.q.eq(delay(m, en, q, stages, name="q")),
                         self.o.p.tag.eq(delay(m, en, self.i.p.tag, stages, name="tag"))]
        else:
            m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready),
                         self.o.p.q.eq(q), self.o.p.tag.eq(self.i.p.tag)]
        return m
