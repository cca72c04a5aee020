"""Bad input to golden: each a PyiosoError that names the problem and the fix."""

import pytest
import torch

import golden
from golden.errors import PyiosoError
from golden.meaning import FloatConv
from pyioso.quant.fixedpoint import integer_conv


def _fc(**kw):
    base = dict(weight=torch.randint(-8, 8, (4, 3, 3, 16), generator=torch.Generator().manual_seed(0)),
                w_scale=torch.full((4,), 0.05), w_bits=4, in_scale=0.1, in_zero_point=0,
                in_bits=4, out_scale=0.3, out_zero_point=0, out_bits=4, bias=torch.zeros(4))
    base.update(kw)
    return base


def _conv(**kw):
    return integer_conv(FloatConv(**_fc(**kw)))


@pytest.mark.parametrize("kw, match", [
    (dict(w_bits=9), "weight bits=9 is out of range"),
    (dict(in_bits=1), "input bits=1 is out of range"),
    (dict(out_bits=0), "output bits=0 is out of range"),
    (dict(in_zero_point=16), "input zero-point=16 does not fit an unsigned 4-bit code"),
    (dict(w_bits=2), "outside signed 2-bit"),
    (dict(isg_shift=9, isg_codes=torch.zeros(16, dtype=torch.int64)), "ISG shift n=9"),
    (dict(isg_shift=4, isg_codes=torch.full((16,), 2)), "ISG code 2"),
    (dict(isg_shift=4, isg_codes=torch.zeros(15, dtype=torch.int64)), "ISG codes must be"),
    (dict(groups=3), "groups=3 must divide"),
    (dict(activation="gelu"), "activation 'gelu' is not supported"),
])
def test_bad_layers(kw, match):
    with pytest.raises(PyiosoError, match=match):
        _conv(**kw)


def test_bad_inputs_to_a_layer():
    layer = _conv()
    with pytest.raises(PyiosoError, match="expects 16"):
        golden.conv(torch.zeros(1, 4, 4, 8, dtype=torch.int64), layer)
    with pytest.raises(PyiosoError, match="outside unsigned 4-bit"):
        golden.conv(torch.full((1, 4, 4, 16), 16), layer)
    with pytest.raises(PyiosoError, match="integer NHWC"):
        golden.conv(torch.zeros(1, 4, 4, 16), layer)
    with pytest.raises(PyiosoError, match="does not fit a 2x2 input"):
        golden.conv(torch.zeros(1, 2, 2, 16, dtype=torch.int64), layer)
    with pytest.raises(PyiosoError, match=r"must be \[N, C_in\]"):
        golden.linear(torch.zeros(1, 1, 16, dtype=torch.int64), layer)
    with pytest.raises(PyiosoError, match="same shape"):
        golden.residual_add(torch.zeros(1, 2, 2, 3, dtype=torch.int64),
                            torch.zeros(1, 2, 2, 4, dtype=torch.int64),
                            golden.Add((0, 0), (8, 8), golden.Requant(
                                torch.tensor([1, 1]), torch.zeros(2, dtype=torch.int64), 1, 0, 8, 0, 255)))


@pytest.mark.parametrize("sizes, c_in, match", [
    ([16, 16, 8], 48, "sum to 40"),
    ([16, 8, 8], 32, "group 1 has 8 channels, not a multiple of the array's 16 rows"),
    ([-1, 17], 16, "negative size"),
])
def test_bad_hw_groupings(sizes, c_in, match):
    with pytest.raises(PyiosoError, match=match):
        golden.check_hw_grouping(sizes, c_in)
        golden.channel_codes(sizes, [0] * len(sizes))


def test_good_hw_groupings():
    golden.check_hw_grouping([32, 0, 3], 35)      # remainder in the last non-empty group
    golden.check_hw_grouping([16, 3, 0], 19)      # trailing empty group
    golden.check_hw_grouping([0, 0, 3], 3)        # the stem: one group of 3 channels


def test_channel_codes_mismatch():
    with pytest.raises(PyiosoError, match="one code per group"):
        golden.channel_codes([16, 16], [0])


def test_bad_permutation():
    with pytest.raises(PyiosoError, match="exactly once"):
        _conv().permute_outputs(torch.tensor([0, 0, 1, 2]))


def test_bad_tables():
    with pytest.raises(PyiosoError, match="shift F=0"):
        golden.Requant(torch.ones(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64), 0, 0, 8, 0, 255)
    with pytest.raises(PyiosoError, match="clamp bounds"):
        golden.Requant(torch.ones(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64), 4, 0, 4, 3, 16)
    with pytest.raises(PyiosoError, match="int64 tensor"):
        golden.Requant(torch.ones(2, dtype=torch.int32), torch.zeros(2, dtype=torch.int64), 4, 0, 8, 0, 255)
