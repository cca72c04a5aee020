"""pytest entry of sim/tb_fp16.py: the FP16 scaling unit of the area report's FP16 variant, and
its reference against numpy's IEEE float16 where the unit's reductions do not apply."""

from fractions import Fraction

import numpy as np
import pytest

from hw.params import EngineParams
from sim import runner, tb_fp16

# Four lanes: every lane is the same circuit, and a narrow unit builds and runs faster.
PARAMS = EngineParams(isg=False, requant="fp16", lanes=4)


@pytest.fixture(scope="module")
def sim():
    return runner.build(tb_fp16.make_dut(PARAMS), "fp16_scale", PARAMS)


def test_lint(sim):
    runner.lint(sim)


def test_fp16_scale(sim):
    runner.run(sim, "sim.tb_fp16")


def _ieee(bits: np.ndarray) -> np.ndarray:
    return bits.astype(np.uint16).view(np.float16)


def test_reference_is_ieee_rounding():
    """Conversion, product and sum of the reference equal numpy's float16 (round to nearest
    even) on normal values whose results neither overflow nor fall below 2^-14."""
    rng = np.random.default_rng(0)
    a, b = (tb_fp16.random_fp16(rng, 4000, (5, 25)) for _ in range(2))
    s = rng.integers(-65504, 65505, 4000)
    with np.errstate(over="ignore"):
        results = {"int": (np.float16(s.astype(np.float64)), [Fraction(int(v)) for v in s]),
                   "mul": (_ieee(a) * _ieee(b), [tb_fp16.value(int(x)) * tb_fp16.value(int(y)) for x, y in zip(a, b)]),
                   "add": (_ieee(a) + _ieee(b), [tb_fp16.value(int(x)) + tb_fp16.value(int(y)) for x, y in zip(a, b)])}
    for name, (ieee, exact) in results.items():
        normal = np.isfinite(ieee) & ((np.abs(ieee) >= 2.0 ** -14) | (ieee == 0))
        ours = np.array([tb_fp16.encode(v) for v in exact], dtype=np.uint16)
        assert normal.mean() > 0.9, name
        assert np.array_equal(_ieee(ours)[normal], ieee[normal]), name


def test_reference_reductions():
    """Saturation at 65,504, flush to zero below 2^-14, subnormal inputs as zero, rhu ties."""
    assert tb_fp16.encode(Fraction(65520)) == tb_fp16.MAX_FINITE
    assert tb_fp16.encode(Fraction(65519)) == tb_fp16.MAX_FINITE
    assert tb_fp16.encode(-Fraction(10 ** 9)) == 0x8000 | tb_fp16.MAX_FINITE
    assert tb_fp16.encode(tb_fp16.MIN_NORMAL * Fraction(4095, 4096)) == 0x0400    # rounds up to it
    assert tb_fp16.encode(tb_fp16.MIN_NORMAL * Fraction(4093, 4096)) == 0          # flushed
    assert tb_fp16.value(0x03FF) == 0
    assert tb_fp16.reference(5, 0x3800, 0) == 3          # 2.5 -> 3
    assert tb_fp16.reference(-5, 0x3800, 0) == -2        # -2.5 -> -2
