"""Float -> (M, B, F) conversion of ARCHITECTURE §3 and the §7 overflow refusals."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from golden.errors import PyiosoError
from golden.meaning import FloatConv
from golden.spec import W_M
from pyioso.quant.fixedpoint import fixed_point, integer_conv, rhu

LIMIT = 2 ** (W_M - 1) - 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False).filter(lambda v: abs(v) > 1e-9),
                min_size=1, max_size=64))
def test_shift_is_the_largest_that_fits(values):
    v = torch.tensor(values, dtype=torch.float64)
    ints, shift = fixed_point(v)
    assert 1 <= shift <= 62
    assert ints.abs().max() <= LIMIT
    if shift < 62:
        assert rhu(v * 2.0 ** (shift + 1)).abs().max() > LIMIT
        assert ints.abs().max() >= 2 ** (W_M - 2)          # 23 significant bits at the top
        strong = v.abs() >= v.abs().max() * 2 ** -7
        assert (ints[strong].abs() >= 2 ** 15).all()          # >= 16 significant bits
    assert torch.equal(ints, rhu(v * 2.0 ** shift))


def test_round_half_up_is_deterministic():
    v = torch.tensor([0.5, 1.5, -0.5, -1.5, 2.5], dtype=torch.float64)
    assert rhu(v).tolist() == [1, 2, 0, -1, 3]
    a = fixed_point(torch.tensor([0.123456789, -3.5, 7e-3], dtype=torch.float64))
    b = fixed_point(torch.tensor([0.123456789, -3.5, 7e-3], dtype=torch.float64))
    assert torch.equal(a[0], b[0]) and a[1] == b[1]


def test_all_zero_multipliers():
    ints, shift = fixed_point(torch.zeros(5, dtype=torch.float64))
    assert ints.tolist() == [0] * 5 and shift == W_M - 1


def _layer(**kw):
    c_out, c_in = kw.pop("c_out", 4), kw.pop("c_in", 8)
    bits = kw.pop("bits", 8)
    gen = torch.Generator().manual_seed(0)
    base = dict(weight=torch.randint(-2 ** (bits - 1), 2 ** (bits - 1), (c_out, 3, 3, c_in), generator=gen),
                w_scale=torch.full((c_out,), 0.01), w_bits=bits, in_scale=0.02, in_zero_point=0,
                in_bits=bits, out_scale=0.1, out_zero_point=0, out_bits=8, bias=torch.zeros(c_out))
    base.update(kw)
    return FloatConv(**base)


def test_zero_point_term_is_folded_exactly_into_b():
    fc = _layer(in_zero_point=117, isg_shift=4, isg_codes=torch.tensor([1, 1, 0, 0, -1, -1, 0, 1]))
    rq = integer_conv(fc).requant
    m0 = integer_conv(_layer(isg_shift=4, isg_codes=fc.isg_codes)).requant
    c_k = ((16 + fc.isg_codes) * fc.weight).flatten(1).sum(1)
    assert torch.equal(m0.offset - rq.offset, 117 * c_k * rq.multiplier)


def test_accumulator_overflow_is_refused():
    with pytest.raises(PyiosoError, match="overflows a 16-bit accumulator"):
        integer_conv(_layer(c_in=64), acc_width=16)
    integer_conv(_layer(c_in=64), acc_width=32)   # fits the default engine


def test_output_scale_too_small_is_refused():
    with pytest.raises(PyiosoError, match="integer bits"):
        integer_conv(_layer(out_scale=1e-12))


def test_non_finite_scale_is_refused():
    with pytest.raises(PyiosoError, match="non-finite"):
        integer_conv(_layer(w_scale=torch.tensor([0.01, float("nan"), 0.01, 0.01])))


def test_extreme_ratio_that_loses_precision_is_refused():
    with pytest.raises(PyiosoError, match="codes of error"):
        integer_conv(_layer(c_in=512, out_scale=1e-6))
