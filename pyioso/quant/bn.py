"""BatchNorm folding: a layer followed by BatchNorm (inference statistics) as one layer.

BN(y) = gamma * (y - mean) / sqrt(var + eps) + beta is a per-output-channel affine map, so with
a = gamma / sqrt(var + eps) it folds into the layer: w' = a * w (per output channel, dim 0 of the
weight, whatever the conv's groups), b' = a * (b - mean) + beta. Quantizing w' rather than w is
what integer inference runs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from golden.errors import PyiosoError


@torch.no_grad()
def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None,
            bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a layer with output channels on dim 0 followed by ``bn``."""
    if bn.running_mean is None:
        raise PyiosoError("BatchNorm without running statistics (track_running_stats=False) "
                          "normalizes by batch statistics and cannot be folded: use one with "
                          "running statistics")
    if bn.num_features != weight.shape[0]:
        raise PyiosoError(f"BatchNorm has {bn.num_features} features but the layer has "
                          f"{weight.shape[0]} output channels: fold the BN that follows this layer")
    a = torch.rsqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * a
    if bn.affine:
        a, shift = a * bn.weight, shift * bn.weight + bn.bias
    a, shift = a.to(weight.dtype), shift.to(weight.dtype)
    bias = torch.zeros_like(a) if bias is None else bias
    return weight * a.reshape(-1, *[1] * (weight.dim() - 1)), a * bias + shift


def _fold(layer: nn.Module, bn: nn.Module, kinds: tuple[type, type]):
    if not (isinstance(layer, kinds[0]) and isinstance(bn, kinds[1])):
        raise PyiosoError(f"cannot fold {type(bn).__name__} into {type(layer).__name__}: "
                          f"this folds {kinds[1].__name__} into {kinds[0].__name__}")
    return fold_bn(layer.weight, layer.bias, bn)


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of Conv2d (any groups, with or without bias) followed by BatchNorm2d."""
    return _fold(conv, bn, (nn.Conv2d, nn.BatchNorm2d))


def fold_linear_bn(linear: nn.Linear, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of Linear followed by BatchNorm1d."""
    return _fold(linear, bn, (nn.Linear, nn.BatchNorm1d))


def fused_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d (with bias) equal to ``bn(conv(x))`` in eval mode; the inputs are untouched."""
    weight, bias = fold_conv_bn(conv, bn)
    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter(weight)
    fused.bias = nn.Parameter(bias)
    return fused
