"""A float conv or linear layer (with its BN and activation) as the spec's quantized float layer.

Shared by the single-layer cases (pyioso/integer/layer_case.py) and the integer network
(pyioso/integer/intnet.py): BN folded into the weights, weights per-channel symmetric and activations per
tensor asymmetric with an observer (MSE by default), a valid hardware ISG split on dense layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import golden
from golden.errors import PyiosoError
from golden.meaning import FloatConv
from golden.spec import GRANULARITY, ISG_SHIFT, PAPER_GROUP_CODES
from pyioso.quant.bn import fold_conv_bn, fold_linear_bn
from pyioso.quant.observers import make_observer
from pyioso.quant.uniform import qrange, quantize


@dataclass(frozen=True)
class Coding:
    """Per-tensor activation coding (ARCHITECTURE §1)."""

    scale: float
    zero_point: int
    bits: int


ACT_SAMPLES = 2 ** 18     # values an activation range search scores (a deterministic stride)


def qparams(x: torch.Tensor, bits: int, signed: bool, ch_axis: int | None = None,
            max_samples: int | None = None, observer: str = "mse"):
    """(scale, zero_point) from the named observer. A per-tensor one sees a batch image by
    image (the EMA's batches; every other observer sees the same values either way)."""
    obs = make_observer(observer, ch_axis, max_samples)
    for part in (x.split(1) if ch_axis is None and x.dim() > 1 else (x,)):
        obs(part)
    return obs.calculate_qparams(bits, signed)


def codes(x: torch.Tensor, scale, zero_point, bits: int, signed: bool, ch_axis=None) -> torch.Tensor:
    return quantize(x.detach(), scale, zero_point, *qrange(bits, signed), ch_axis).to(torch.int64)


def observe_coding(x: torch.Tensor, bits: int, observer: str = "mse") -> Coding:
    """A tensor's coding from the named observer on its float values (NCHW)."""
    scale, zero_point = qparams(x, bits, signed=False, max_samples=ACT_SAMPLES, observer=observer)
    return Coding(float(scale), int(zero_point), bits)


def encode(x: torch.Tensor, coding: Coding) -> torch.Tensor:
    """NCHW floats -> NHWC codes."""
    return codes(x, coding.scale, coding.zero_point, coding.bits, signed=False).permute(0, 2, 3, 1).contiguous()


def hw_group_sizes(c_in: int, granularity: int = GRANULARITY) -> tuple[int, int, int]:
    """A valid 3-group split for the array (§4): about 1/2, 1/4, 1/4 of the K-tiles."""
    tiles = -(-c_in // granularity)
    first = max(1, tiles // 2)
    second, third = (tiles - first + 1) // 2, (tiles - first) // 2
    sizes = [first * granularity, second * granularity, third * granularity]
    sizes[[i for i, s in enumerate(sizes) if s][-1]] -= tiles * granularity - c_in
    return tuple(sizes)


def float_conv(module: nn.Module, bn: nn.Module | None, activation: str, x: Coding, y: Coding,
               w_bits: int, isg_shift: int = ISG_SHIFT) -> FloatConv:
    """The quantized float layer of a Conv2d or Linear followed by `bn` and `activation`."""
    if isinstance(module, nn.Linear):
        weight, bias = fold_linear_bn(module, bn) if bn else (module.weight, module.bias)
        weight, geometry = weight[:, :, None, None], {}
    else:
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            raise PyiosoError(f"a conv padded with {module.padding!r}/{module.padding_mode}: the "
                              "integer conv takes explicit zero padding")
        weight, bias = fold_conv_bn(module, bn) if bn else (module.weight, module.bias)
        geometry = dict(stride=module.stride, padding=module.padding, dilation=module.dilation,
                        groups=module.groups)
    weight = weight.detach()
    shift = isg_shift if geometry.get("groups", 1) == 1 else 0   # §2: grouped layers take no ISG
    s_w, _ = qparams(weight, w_bits, signed=True, ch_axis=0)
    return FloatConv(
        weight=codes(weight, s_w, 0, w_bits, signed=True, ch_axis=0).permute(0, 2, 3, 1),
        w_scale=s_w.to(torch.float64).flatten(), w_bits=w_bits,
        in_scale=x.scale, in_zero_point=x.zero_point, in_bits=x.bits,
        out_scale=y.scale, out_zero_point=y.zero_point, out_bits=y.bits,
        bias=(torch.zeros(weight.shape[0]) if bias is None else bias).detach().to(torch.float64),
        isg_shift=shift,
        isg_codes=golden.channel_codes(hw_group_sizes(weight.shape[1]), PAPER_GROUP_CODES) if shift else None,
        activation=activation, **geometry)
