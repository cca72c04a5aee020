"""FP16 post-accumulator scaling: the area report's FP16 variant, in place of the BN unit.

The paper's Table 11 compares integer requantization with methods that scale the accumulator in
FP16. This unit is that datapath, per lane:

    u = rhu(fp16(fp16(S) * m) + b)          m, b: FP16 per output channel (the TABLE entries)

followed by the same activation unit (y = clamp(u + z_out, lo, hi)). The arithmetic is binary16
with round to nearest even at each of the three FP16 results, the usual reductions of an NPU's
FP16 unit: no infinities or NaNs (results beyond 65,504 saturate to it), subnormal inputs read
as zero and results below 2^-14 flush to zero, and an input exponent field of 31 is an ordinary
binade (the host never writes one). `rhu` rounds half up, as the BN unit does (ARCHITECTURE §3).
The reference is `sim/tb_fp16.py`. Four stages: convert, multiply, add, round to an integer.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.params import EngineParams
from hw.pipeline import delay, stall_control

MANT = 10                   # stored fraction bits; significands have MANT + 1
BIAS = 15
MAX_EXP = 30                # largest exponent field of a result (65,504 = 0x7bff)
GRS = 3                     # guard, round and sticky bits of the adder
EXP = signed(8)             # exponents in flight: every intermediate one fits


def _unpack(m: Module, bits, name: str):
    """(sign, exponent field, significand with the hidden one; 0 for a zero or subnormal)."""
    exp = bits[MANT:MANT + 5]
    sig = Signal(MANT + 1, name=f"{name}_sig")
    m.d.comb += sig.eq(Mux(exp == 0, 0, Cat(bits[:MANT], Const(1, 1))))
    return bits[15], exp, sig


def _leading_zeros(m: Module, v, name: str):
    """Leading zeros of `v` (its width when v is 0)."""
    width = len(v)
    count = Signal(range(width + 1), name=f"{name}_lz")
    value = Const(width, count.shape())
    for i in range(width):
        value = Mux(v[i], width - 1 - i, value)
    m.d.comb += count.eq(value)
    return count


def _round_pack(m: Module, sign, sig, exp, name: str):
    """FP16 bits of (-1)^sign * sig * 2^(exp - BIAS - len(sig) + 1), `sig` normalized (its top
    bit set) or zero: round to nearest even to MANT + 1 bits, flush below 2^-14, saturate."""
    width = len(sig)
    keep = sig[width - MANT - 1:]
    guard = sig[width - MANT - 2]
    sticky = sig[:width - MANT - 2].any()
    rounded = Signal(MANT + 2, name=f"{name}_rounded")
    m.d.comb += rounded.eq(keep + (guard & (sticky | keep[0])))
    carry = rounded[MANT + 1]
    final_exp = Signal(EXP, name=f"{name}_exp")
    m.d.comb += final_exp.eq(exp + carry)
    fraction = Mux(carry, 0, rounded[:MANT])
    out = Signal(16, name=f"{name}_bits")
    with m.If((sig == 0) | (final_exp <= 0)):
        m.d.comb += out.eq(0)
    with m.Elif(final_exp > MAX_EXP):
        m.d.comb += out.eq(Cat(Const(2 ** MANT - 1, MANT), Const(MAX_EXP, 5), sign))
    with m.Else():
        m.d.comb += out.eq(Cat(fraction, final_exp[:5], sign))
    return out


def _from_int(m: Module, s, name: str):
    """fp16(s) for a signed integer s."""
    magnitude = Signal(unsigned(len(s)), name=f"{name}_mag")
    m.d.comb += magnitude.eq(Mux(s < 0, -s, s))
    lz = _leading_zeros(m, magnitude, name)
    normal = Signal(len(s), name=f"{name}_norm")
    m.d.comb += normal.eq(magnitude << lz)
    return _round_pack(m, s < 0, normal, BIAS + len(s) - 1 - lz, name)


def _multiply(m: Module, a, b, name: str):
    """fp16(a * b): an 11 x 11 significand product, normalized by at most one place."""
    sa, ea, ma = _unpack(m, a, f"{name}_a")
    sb, eb, mb = _unpack(m, b, f"{name}_b")
    product = Signal(2 * MANT + 2, name=f"{name}_product")
    m.d.comb += product.eq(ma * mb)
    top = product[-1]
    normal = Mux(top, product, product << 1)
    return _round_pack(m, sa ^ sb, normal[:len(product)], ea + eb - BIAS + top, name)


def _add(m: Module, a, b, name: str):
    """fp16(a + b): align the smaller operand with guard, round and sticky bits, add or
    subtract, renormalize (correctly rounded: a cancellation of more than one place is exact)."""
    swap = b[:15] > a[:15]
    big, small = Mux(swap, b, a), Mux(swap, a, b)
    sa, ea, ma = _unpack(m, big, f"{name}_big")
    sb, eb, mb = _unpack(m, small, f"{name}_small")
    frame = MANT + 1 + GRS
    distance = Signal(range(frame + 2), name=f"{name}_distance")
    m.d.comb += distance.eq(Mux(ea - eb > frame + 1, frame + 1, ea - eb))
    shifted = Signal(2 * frame, name=f"{name}_shifted")
    m.d.comb += shifted.eq((mb << (GRS + frame)) >> distance)
    aligned = shifted[frame:] | shifted[:frame].any()
    total = Signal(frame + 1, name=f"{name}_total")
    m.d.comb += total.eq(Mux(sa == sb, (ma << GRS) + aligned, (ma << GRS) - aligned))
    lz = _leading_zeros(m, total, name)
    normal = Signal(frame + 1, name=f"{name}_norm")
    m.d.comb += normal.eq(total << lz)
    return _round_pack(m, sa, normal, ea + 1 - lz, name)


def _to_int(m: Module, a, width: int, name: str):
    """rhu(a) as a signed integer of `width` bits: (V + 2^(j-1)) >> j with V the signed
    significand and j = 25 - exponent, computed as ((V >> (j-1)) + 1) >> 1 like the BN unit."""
    sign, exp, sig = _unpack(m, a, name)
    value = Signal(signed(MANT + 2), name=f"{name}_value")
    m.d.comb += value.eq(Mux(sign, -sig, sig))
    point = BIAS + MANT             # the exponent field at which V is the integer itself
    left = Signal(range(2 ** 5 - point), name=f"{name}_left")
    right = Signal(range(point), name=f"{name}_right")
    m.d.comb += [left.eq(exp - point), right.eq(point - 1 - exp)]
    out = Signal(signed(width), name=f"{name}_int")
    with m.If(exp >= point):
        m.d.comb += out.eq(value << left)
    with m.Else():
        m.d.comb += out.eq(((value >> right) + 1) >> 1)
    return out


class Fp16Scale(wiring.Component):
    """i: {s: L x signed(acc_width), m: L x fp16, b: L x fp16, tag} -> o: {u: L x signed(t_width),
    tag}: the BN unit's ports without its `shift` config, `latency` = 4 (see the module doc)."""

    latency = 4

    @staticmethod
    def table_entry(params: EngineParams) -> data.StructLayout:
        """One output channel's TABLE entry: FP16 scale and offset."""
        return data.StructLayout({"m": unsigned(16), "b": unsigned(16)})

    def __init__(self, params: EngineParams, tag_layout):
        self.params = params
        lanes = params.lanes
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "s": data.ArrayLayout(signed(params.acc_width), lanes),
                "m": data.ArrayLayout(unsigned(16), lanes),
                "b": data.ArrayLayout(unsigned(16), lanes),
                "tag": tag_layout,
            }))),
            "o": Out(stream.Signature(data.StructLayout({
                "u": data.ArrayLayout(signed(params.t_width), lanes),
                "tag": tag_layout,
            }))),
        })

    def elaborate(self, platform):
        m = Module()
        en = stall_control(m, self.i, self.o, self.latency)
        for k in range(self.params.lanes):
            lane = f"lane{k}"
            x = delay(m, en, _from_int(m, self.i.p.s[k], f"{lane}_cvt"), 1, name=f"x{k}")
            scale, offset = (delay(m, en, v, 1, name=f"{n}{k}")
                             for n, v in (("m", self.i.p.m[k]), ("b", self.i.p.b[k])))
            product = delay(m, en, _multiply(m, x, scale, f"{lane}_mul"), 1, name=f"p{k}")
            offset = delay(m, en, offset, 1, name=f"b{k}_late")
            total = delay(m, en, _add(m, product, offset, f"{lane}_add"), 1, name=f"r{k}")
            u = delay(m, en, _to_int(m, total, self.params.t_width, f"{lane}_int"), 1, name=f"u{k}")
            m.d.comb += self.o.p.u[k].eq(u)
        m.d.comb += self.o.p.tag.eq(delay(m, en, self.i.p.tag, self.latency, name="tag"))
        return m
