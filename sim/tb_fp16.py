"""cocotb testbench of hw.fp16.Fp16Scale against an exact reference of its arithmetic.

The reference rounds exact rationals (fractions.Fraction), so it holds no floating-point
shortcut of its own; sim/test_fp16.py checks it against numpy's IEEE float16 wherever the
unit's reductions (saturation, flush to zero) do not apply. The beats aim at what breaks FP
units: accumulator sums at zero, one, the saturation bound and on rounding ties; scales that
push products into overflow and underflow; offsets that cancel the product exactly or to the
last place; results on integer half-way points.
"""

from fractions import Fraction
from math import floor

import cocotb
import numpy as np
from amaranth import unsigned

from hw.fp16 import BIAS, MANT, MAX_EXP, Fp16Scale
from sim import streams

TAG = unsigned(5)
MAX_FINITE = 0x7BFF
MIN_NORMAL = Fraction(1, 2 ** (BIAS - 1))


def make_dut(params):
    return Fp16Scale(params, TAG)


def value(bits: int) -> Fraction:
    """The number an FP16 code means to the unit (exponent field 0 reads as zero)."""
    exp, fraction = (bits >> MANT) & 0x1F, bits & (2 ** MANT - 1)
    if exp == 0:
        return Fraction(0)
    magnitude = Fraction(2 ** MANT + fraction) * Fraction(2) ** (exp - BIAS - MANT)
    return -magnitude if bits >> 15 else magnitude


def encode(v: Fraction) -> int:
    """v rounded to FP16: nearest, ties to even; below 2^-14 zero, beyond 65,504 saturated."""
    if v == 0:
        return 0
    sign, magnitude = int(v < 0) << 15, abs(v)
    exp = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** exp > magnitude:
        exp -= 1                                    # now 2^exp <= magnitude < 2^(exp+1)
    significand = round(magnitude / Fraction(2) ** (exp - MANT))    # Fraction rounds half to even
    if significand == 2 ** (MANT + 1):
        significand, exp = 2 ** MANT, exp + 1
    if exp + BIAS <= 0:
        return 0
    if exp + BIAS > MAX_EXP:
        return sign | MAX_FINITE
    return sign | (exp + BIAS) << MANT | (significand - 2 ** MANT)


def reference(s: int, m: int, b: int) -> int:
    """u = rhu(fp16(fp16(s) * m) + b), rhu(v) = floor(v + 1/2)."""
    product = encode(value(encode(Fraction(s))) * value(m))
    return floor(value(encode(value(product) + value(b))) + Fraction(1, 2))


def random_fp16(rng, shape, exponents=(1, MAX_EXP)) -> np.ndarray:
    """FP16 codes with both signs, exponent fields uniform in `exponents`, any fraction."""
    exp = rng.integers(exponents[0], exponents[1] + 1, shape)
    return (rng.integers(0, 2, shape) << 15) | (exp << MANT) | rng.integers(0, 2 ** MANT, shape)


def make_beats(rng, params, n):
    """S, m, b [n, lanes] (see the module doc for what they aim at)."""
    shape = (n, params.lanes)
    top = 2 ** (params.acc_width - 1)
    special_s = [0, 1, -1, 2049, 2051, -2051, 4097, 65503, 65519, 65520, -65520, top - 1, -top]
    s = np.choose(rng.integers(0, 3, shape), [
        rng.integers(-top, top, shape),
        rng.integers(-2 ** 14, 2 ** 14, shape),
        rng.choice(special_s, shape)])
    m = np.choose(rng.integers(0, 4, shape), [
        random_fp16(rng, shape, (BIAS - 14, BIAS)),     # scales of a requantizer: 2^-14 .. 2
        random_fp16(rng, shape),                        # any normal scale
        rng.choice([0, 1, 0x8001, 0x3C00, 0xBC00, 0x7C00, 0x7FFF, 0x0400], shape),
        random_fp16(rng, shape, (0, 0))])               # subnormal: read as zero
    product = np.vectorize(lambda s_k, m_k: encode(value(encode(Fraction(int(s_k)))) * value(int(m_k))))(s, m)
    cancel = np.where(product & 0x7FFF, product ^ 0x8000, 0)
    b = np.choose(rng.integers(0, 4, shape), [
        random_fp16(rng, shape, (BIAS - 3, BIAS + 8)),  # offsets of a requantizer
        cancel,                                         # exact cancellation
        cancel + rng.choice([-1, 1], shape) * (cancel & 0x7C00 > 0x0400),   # to the last place
        0x3800 | (rng.integers(0, 2, shape) << 15)])    # +-1/2: rhu ties for integer products
    return s, m, b


async def stream(dut, unit, rng, n, *, bubbles=0.0, stalls=0.0):
    s, m, b = make_beats(rng, unit.params, n)
    u = np.vectorize(lambda *v: reference(*map(int, v)))(s, m, b)
    return await streams.pipe_requant(dut, unit, rng, s, m, b, u, bubbles=bubbles, stalls=stalls)


@cocotb.test()
async def full_rate(dut):
    """One beat per cycle, each out exactly `latency` cycles after it went in."""
    unit = make_dut(streams.dut_params())
    rng = await streams.reset(dut, unit)
    source, sink = await stream(dut, unit, rng, 300)
    streams.expect_full_rate(source, sink, unit.latency)


@cocotb.test()
async def backpressure(dut):
    """Random input bubbles and output backpressure over many more beats."""
    unit = make_dut(streams.dut_params())
    rng = await streams.reset(dut, unit)
    await stream(dut, unit, rng, 1500, bubbles=0.2, stalls=0.3)
