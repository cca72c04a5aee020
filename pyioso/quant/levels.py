"""Ternary and binary weights, the lecture's extreme quantization, per output channel.

Ternary (TWN, Li et al. 2016): threshold Delta = 0.7 mean|W|, codes sign(W) where |W| > Delta and
0 elsewhere, scale alpha = the mean |W| over the kept weights (the L2-optimal alpha for that
mask). Binary (XNOR-Net, Rastegari et al. 2016): codes sign(W), alpha = mean|W|. Both code sets
lie inside the signed 2-bit grid -2..1, so the integer engine runs them as 2-bit weights with
alpha as the channel's weight scale: nothing of the hardware changes.
"""

from __future__ import annotations

import torch

from pyioso.quant.rounding import NearestRounding, _WeightRounding
from pyioso.quant.uniform import safe_scale

LEVELS = ("uniform", "ternary", "binary")
STORAGE_BITS = 2        # the signed grid both code sets are stored on
TWN_THRESHOLD = 0.7     # Delta / mean|W| (TWN's approximation for Gaussian-like weights)


def _per_channel(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs().flatten(1)


def ternary_qparams(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, Delta) per output channel (dim 0); a channel of zeros gets alpha = eps, codes 0."""
    mag = _per_channel(weight)
    threshold = TWN_THRESHOLD * mag.mean(dim=1)
    kept = mag > threshold[:, None]
    alpha = (mag * kept).sum(dim=1) / kept.sum(dim=1).clamp_min(1)
    return safe_scale(alpha), threshold


def binary_scale(weight: torch.Tensor) -> torch.Tensor:
    """alpha = mean|W| per output channel (dim 0)."""
    return safe_scale(_per_channel(weight).mean(dim=1))


class TernaryRounding(_WeightRounding):
    """TWN's codes: sign(W) where |W| exceeds the channel's threshold, else 0 (fixed, not learned)."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, threshold: torch.Tensor):
        super().__init__(weight, scale, torch.zeros_like(scale), STORAGE_BITS, signed=True, ch_axis=0)
        shape = (-1,) + (1,) * (weight.dim() - 1)
        self.register_buffer("threshold", threshold.reshape(shape).clone())

    def codes(self) -> torch.Tensor:
        return torch.sign(self.weight) * (self.weight.abs() > self.threshold).to(self.weight.dtype)


def fixed_rounding(levels: str, weight: torch.Tensor) -> tuple[_WeightRounding, torch.Tensor]:
    """(the rounding of `levels` "ternary" or "binary" for a [C_out, ...] weight, its scale)."""
    if levels == "ternary":
        scale, threshold = ternary_qparams(weight)
        return TernaryRounding(weight, scale, threshold), scale
    scale = binary_scale(weight)
    return NearestRounding(weight, scale, torch.zeros_like(scale), 1, signed=True, ch_axis=0), scale
