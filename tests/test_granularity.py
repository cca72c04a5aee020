"""Weight scale granularity (tensor, channel, VS-Quant vectors, MX blocks) and stochastic rounding."""

import pytest
import torch

from golden.errors import PyiosoError
from pyioso.calib import calibrate, workflow
from pyioso.calib.qnet import QConv, WeightFormat
from pyioso.quant import granularity
from pyioso.quant.rounding import AdaRound, StochasticRounding


def _weight() -> torch.Tensor:
    torch.manual_seed(0)
    w = torch.randn(4, 40, 3, 3) * torch.linspace(0.1, 2.0, 40)[None, :, None, None]
    return w


def _conv(fmt: WeightFormat, bits: int = 4) -> QConv:
    act = type("Act", (), {})()
    geometry = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    return QConv(_weight(), torch.zeros(4), geometry, bits, act, "relu", fmt)


def test_effective_bits_count_the_shared_scales():
    assert granularity.effective_bits(4, "channel") == granularity.effective_bits(4, "tensor") == 4
    assert granularity.effective_bits(4, "vector") == 4 + 4 / 16
    assert granularity.effective_bits(2, "mx") == 2 + 8 / 32


def test_vector_scales_are_integer_multiples_of_the_channel_scale_per_16_input_channels():
    w, bits = _weight(), 4
    channel = _conv(WeightFormat()).w_scale
    scale = granularity.element_scales(w, bits, "vector", channel)
    assert scale.shape == w.shape
    v = scale / (channel / 15)[:, None, None, None]
    assert torch.allclose(v, v.round(), atol=1e-4) and v.min() >= 1 - 1e-4 and v.max() <= 15 + 1e-4
    stored = scale.permute(0, 2, 3, 1).reshape(4, -1)   # storage order: input channels fastest
    for start in range(0, stored.shape[1], 16):         # constant within each vector of 16
        block = stored[:, start:start + 16]
        assert torch.equal(block, block[:, :1].expand_as(block))
    assert len(stored[0].unique()) > 1                  # and not within the channel


def test_mx_scales_are_powers_of_two_that_clip_nothing():
    w, bits = _weight(), 4
    scale = granularity.element_scales(w, bits, "mx", torch.ones(4))
    assert torch.equal(torch.exp2(torch.log2(scale).round()), scale)
    assert bool((w.abs() <= 7 * scale + 1e-6).all())


@pytest.mark.parametrize("name", ["vector", "mx"])
def test_element_granularity_rounds_and_learns_on_its_own_scales(name):
    conv = _conv(WeightFormat(granularity=name))
    near = conv.rounding()
    assert conv.rounding.scale.shape == conv.weight.shape
    codes = conv.weight_codes()
    assert int(codes.min()) >= -8 and int(codes.max()) <= 7
    if name == "vector":    # finer scales than the channel's: a smaller error (MX's powers of two need not be)
        assert (near - conv.weight).abs().mean() < (_conv(WeightFormat()).rounding() - conv.weight).abs().mean()
    ada = conv.use_adaround()
    soft, reg = ada.soft_weight(2.0)
    assert isinstance(ada, AdaRound) and torch.isfinite(soft).all() and torch.isfinite(reg)


def test_tensor_granularity_is_one_scale_and_exports():
    conv = _conv(WeightFormat(granularity="tensor"))
    assert len(conv.w_scale.unique()) == 1
    assert workflow.exportable(calibrate.Config(weight_granularity="tensor"))
    assert not workflow.exportable(calibrate.Config(weight_granularity="vector"))
    with pytest.raises(PyiosoError, match="weight_granularity vector scales the uniform symmetric grid"):
        calibrate.Config(w_bits=2, weight_granularity="vector", weight_levels="ternary")


def test_stochastic_rounding_is_unbiased_reproducible_and_between_neighbours():
    w = _weight()
    scale = w.abs().flatten(1).amax(1) / 7
    draws = torch.stack([StochasticRounding(w, scale, 0, 4, True, ch_axis=0, seed=s).codes() for s in range(200)])
    scaled = (w / scale[:, None, None, None]).clamp(-8, 7)
    assert bool(((draws == scaled.floor()) | (draws == scaled.ceil())).all())
    assert (draws.mean(0) - scaled).abs().mean() < 0.05
    assert torch.equal(StochasticRounding(w, scale, 0, 4, True, ch_axis=0, seed=3).codes(), draws[3])
    conv = _conv(WeightFormat(stochastic=True, seed=5))
    assert isinstance(conv.rounding, StochasticRounding)
    with pytest.raises(PyiosoError, match="weight_rounding 'dither'"):
        calibrate.Config(weight_rounding="dither")
