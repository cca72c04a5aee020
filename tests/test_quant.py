"""Uniform quantizer: grids, the code convention, granularities, the STE gradient, bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from golden.errors import PyiosoError
from pyioso.quant.uniform import dequantize, fake_quantize, qparams_from_range, qrange, quantize

PROPS = settings(max_examples=80, deadline=None)
F64 = torch.float64

grids = st.tuples(st.integers(1, 8), st.booleans())
scales = st.floats(1e-3, 1e3)
values = st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=32)


@st.composite
def grid_and_zero_point(draw):
    bits, signed = draw(grids)
    qmin, qmax = qrange(bits, signed)
    return qmin, qmax, 0 if signed else draw(st.integers(qmin, qmax))


def test_qrange():
    assert qrange(1, True) == (-1, 1)           # binary {-1, +1}
    assert qrange(1, False) == (0, 1)
    assert qrange(2, True) == (-2, 1)
    assert qrange(4, False) == (0, 15)
    assert qrange(8, True) == (-128, 127)
    assert qrange(8, False) == (0, 255)


@pytest.mark.parametrize("bits", [0, 9, -1, 2.0, True, None])
def test_bad_bits(bits):
    with pytest.raises(PyiosoError, match=r"bits=.* out of range: use an integer in 1\.\.8"):
        qrange(bits, True)


def test_round_half_to_even_before_the_zero_point():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5], dtype=F64)
    assert quantize(x, 1.0, 0, -8, 7).tolist() == [0, 2, 2, 0, -2, -2]
    # round(2.5) + 1 = 3, whereas round(2.5 + 1) would be 4
    assert quantize(torch.tensor([2.5], dtype=F64), 1.0, 1, 0, 15).tolist() == [3]


def test_binary_is_sign_quantization():
    x = torch.tensor([-2.0, -0.1, 0.0, 0.1, 3.0], dtype=F64)
    qmin, qmax = qrange(1, True)
    assert quantize(x, 0.5, 0, qmin, qmax).tolist() == [-1, -1, 1, 1, 1]
    assert fake_quantize(x, 0.5, 0, qmin, qmax).tolist() == [-0.5, -0.5, 0.5, 0.5, 0.5]


@PROPS
@given(values, grid_and_zero_point(), scales)
def test_codes_are_integers_on_the_grid_and_match_the_formula(xs, grid, scale):
    qmin, qmax, z = grid
    x = torch.tensor(xs, dtype=F64)
    code = quantize(x, scale, z, qmin, qmax)
    assert torch.all((code >= qmin) & (code <= qmax) & (code == torch.round(code)))
    if (qmin, qmax) != (-1, 1):
        ref = np.clip(np.round(np.array(xs) / scale) + z, qmin, qmax)   # np.round: half to even
        assert code.tolist() == ref.tolist()
    assert torch.equal(fake_quantize(x, scale, z, qmin, qmax), (code - z) * scale)


@PROPS
@given(st.lists(st.floats(0, 1), min_size=1, max_size=32), grid_and_zero_point(), scales)
def test_error_inside_the_range_is_at_most_half_a_step(fractions, grid, scale):
    qmin, qmax, z = grid
    if (qmin, qmax) == (-1, 1):      # binary has no zero code: its error reaches s
        return
    lo, hi = (qmin - z) * scale, (qmax - z) * scale
    x = lo + torch.tensor(fractions, dtype=F64) * (hi - lo)
    err = (fake_quantize(x, scale, z, qmin, qmax) - x).abs()
    assert torch.all(err <= scale / 2 * (1 + 1e-9))


@PROPS
@given(st.integers(0, 2), grid_and_zero_point(), st.integers(0, 2**31 - 1))
def test_per_channel_equals_per_tensor_channel_by_channel(ch_axis, grid, seed):
    qmin, qmax, _ = grid
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, 5, generator=gen, dtype=F64) * 4
    channels = x.shape[ch_axis]
    scale = torch.rand(channels, generator=gen, dtype=F64) + 0.05
    zp = torch.randint(qmin, qmax + 1, (channels,), generator=gen).to(F64) if qmin == 0 else 0
    got = fake_quantize(x, scale, zp, qmin, qmax, ch_axis=ch_axis)
    for c in range(channels):
        z = zp[c] if qmin == 0 else 0
        want = fake_quantize(x.select(ch_axis, c), scale[c], z, qmin, qmax)
        assert torch.equal(got.select(ch_axis, c), want)


def test_clipped_ste_passes_gradient_inside_the_grid_only():
    scale, z, qmin, qmax = 0.5, 3, 0, 7          # representable: [-1.5, 2.0]
    x = torch.tensor([-3.0, -1.6, -1.5, -0.26, 0.7, 2.0, 2.1, 5.0], dtype=F64,
                     requires_grad=True)
    fake_quantize(x, scale, z, qmin, qmax).sum().backward()
    assert x.grad.tolist() == [0, 0, 1, 1, 1, 1, 0, 0]


def test_qparams_from_range():
    s, z = qparams_from_range(torch.tensor(-1.0), torch.tensor(0.5), *qrange(4, True))
    assert s.item() == pytest.approx(1 / 7) and z.item() == 0
    s, z = qparams_from_range(torch.tensor(-1.0), torch.tensor(3.0), *qrange(2, False))
    assert s.item() == pytest.approx(4 / 3) and z.item() == 1          # round(0.75)
    s, z = qparams_from_range(torch.tensor(1.0), torch.tensor(3.0), *qrange(2, False))
    assert s.item() == 1.0 and z.item() == 0                           # range widened to 0
    s, z = qparams_from_range(torch.tensor(0.0), torch.tensor(0.0), *qrange(8, False))
    assert s.item() == torch.finfo(torch.float32).eps and z.item() == 0


@pytest.mark.parametrize("scale", [0.0, -0.5, math.nan, math.inf])
def test_bad_scale(scale):
    with pytest.raises(PyiosoError, match="scale must be finite and > 0"):
        quantize(torch.ones(3), scale, 0, -8, 7)


@pytest.mark.parametrize("zero_point", [16, -1, 0.5])
def test_bad_zero_point(zero_point):
    with pytest.raises(PyiosoError, match=r"zero_point must be an integer in \[0, 15\]"):
        quantize(torch.ones(3), 0.1, zero_point, 0, 15)


def test_bad_shapes_and_grids():
    x = torch.ones(2, 3)
    with pytest.raises(PyiosoError, match=r"needs 3 values \(x.shape\[1\]\)"):
        quantize(x, torch.ones(2), 0, -8, 7, ch_axis=1)
    with pytest.raises(PyiosoError, match="ch_axis=2 is out of range for a 2-d tensor"):
        quantize(x, torch.ones(2), 0, -8, 7, ch_axis=2)
    with pytest.raises(PyiosoError, match="does not broadcast"):
        quantize(x, torch.ones(2, 2), 0, -8, 7)
    with pytest.raises(PyiosoError, match="does not broadcast"):
        quantize(x, torch.ones(3), 0, -8, 7)                     # a vector needs ch_axis
    with pytest.raises(PyiosoError, match="not an integer grid"):
        quantize(x, 1.0, 0, 3, 7)
    with pytest.raises(PyiosoError, match="binary grid"):
        quantize(x, 1.0, 1, -1, 1)
    with pytest.raises(PyiosoError, match="floating-point"):
        quantize(torch.ones(3, dtype=torch.int64), 1.0, 0, -8, 7)


def test_dequantize_inverts_codes():
    code = torch.tensor([[0.0, 5.0], [15.0, 3.0]])
    assert dequantize(code, torch.tensor([0.5, 2.0]), torch.tensor([3.0, 1.0]),
                      ch_axis=0).tolist() == [[-1.5, 1.0], [28.0, 4.0]]
