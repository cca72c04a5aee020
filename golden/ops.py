"""Integer ops of ARCHITECTURE §2-§5 on NHWC code tensors.

Sums of products run as float64 convolutions: every product and partial sum is an integer below
2^53 (§7), so they are exact whatever order the library adds in. The rest is int64.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from golden.errors import PyiosoError
from golden.layers import Add, AvgPool, Conv, Requant, conv_output_size, weight_input_channels

EXACT_F64 = 2 ** 53


def _check_codes(x: torch.Tensor, bits: int, channels: int | None, what: str) -> None:
    if x.dim() != 4 or x.dtype.is_floating_point or x.dtype == torch.bool:
        raise PyiosoError(f"{what} must be an integer NHWC code tensor, got {x.dtype} "
                          f"{tuple(x.shape)}")
    if channels is not None and x.shape[3] != channels:
        raise PyiosoError(f"{what} has {x.shape[3]} channels, the layer expects {channels} "
                          "(NHWC layout: channels last)")
    if x.numel() and (x.min() < 0 or x.max() > 2 ** bits - 1):
        raise PyiosoError(f"{what} codes span {int(x.min())}..{int(x.max())}, outside "
                          f"unsigned {bits}-bit 0..{2 ** bits - 1}")


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).to(torch.float64)


def _nhwc_int(y: torch.Tensor) -> torch.Tensor:
    return y.permute(0, 2, 3, 1).to(torch.int64).contiguous()


def _pad(x: torch.Tensor, padding: tuple[int, int], value: int) -> torch.Tensor:
    ph, pw = padding
    return F.pad(x, (pw, pw, ph, ph), value=float(value))


def _weighted_sum(x: torch.Tensor, layer: Conv, factors: torch.Tensor) -> torch.Tensor:
    """sum over taps of (factor_i * w) * x, input padded with its zero-point (§1, §2)."""
    _check_codes(x, layer.in_bits, layer.c_in, "conv input")
    conv_output_size(x.shape[1:3], layer)
    chan = weight_input_channels(layer.weight.shape, layer.groups)
    w = layer.weight.to(torch.int64) * factors[chan][:, None, None, :]
    bound = (2 ** layer.in_bits - 1) * w.abs().sum(dim=(1, 2, 3)).max().item() if w.numel() else 0
    assert bound < EXACT_F64, f"sum bound {bound} >= 2^53: float64 would not be exact (§7)"
    y = F.conv2d(_pad(_nchw(x), layer.padding, layer.in_zero_point),
                 w.permute(0, 3, 1, 2).to(torch.float64),
                 stride=layer.stride, dilation=layer.dilation, groups=layer.groups)
    return _nhwc_int(y)


def accumulate(x: torch.Tensor, layer: Conv) -> torch.Tensor:
    """S of §2: the ISG-combined accumulator, int64 [N, Ho, Wo, C_out]."""
    return _weighted_sum(x, layer, layer.channel_factors())


def group_partial_sums(x: torch.Tensor, layer: Conv, sizes) -> torch.Tensor:
    """A_p of §2 for contiguous groups of the given sizes: int64 [g, N, Ho, Wo, C_out]."""
    bounds = torch.tensor([0, *sizes]).cumsum(0)
    if bounds[-1] != layer.c_in:
        raise PyiosoError(f"group sizes {list(sizes)} do not sum to C_in={layer.c_in}")
    chans = torch.arange(layer.c_in)
    return torch.stack([
        _weighted_sum(x, layer, ((chans >= lo) & (chans < hi)).to(torch.int64))
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist())])


def isg_combine(partials: torch.Tensor, codes, shift: int) -> torch.Tensor:
    """S = sum_p ((A_p << n) + s_p * A_p): shifts and adds only (§2)."""
    total = torch.zeros_like(partials[0])
    for a_p, s_p in zip(partials, codes):
        total += (a_p << shift) + s_p * a_p
    return total


def _round_shift_clamp(t: torch.Tensor, rq: Requant) -> torch.Tensor:
    u = (t + (1 << (rq.shift - 1))) >> rq.shift       # arithmetic shift: round half up
    return torch.clamp(u + rq.zero_point, rq.lo, rq.hi)


def requantize(acc: torch.Tensor, rq: Requant) -> torch.Tensor:
    """§3: y = clamp(((S*M + B + 2^(F-1)) >> F) + z_out, lo, hi), channel on the last axis."""
    if acc.numel():
        worst = acc.abs().max().item() * rq.multiplier.abs().max().item()
        assert worst + rq.offset.abs().max().item() < 2 ** 62, "t overflows int64 (§7)"
    return _round_shift_clamp(acc * rq.multiplier + rq.offset, rq)


def conv(x: torch.Tensor, layer: Conv) -> torch.Tensor:
    """A whole conv layer: codes in, codes out (NHWC)."""
    return requantize(accumulate(x, layer), layer.requant)


def linear(x: torch.Tensor, layer: Conv) -> torch.Tensor:
    """FC as a 1x1 conv on a 1x1 map (§5): x [N, C_in] -> [N, C_out]."""
    if x.dim() != 2:
        raise PyiosoError(f"FC input must be [N, C_in], got {tuple(x.shape)}")
    if layer.kernel != (1, 1):
        raise PyiosoError(f"an FC layer is a 1x1 conv, got kernel {layer.kernel}")
    return conv(x[:, None, None, :], layer)[:, 0, 0, :]


def residual_add(x1: torch.Tensor, x2: torch.Tensor, add: Add) -> torch.Tensor:
    """§5: two coded tensors with their own scales into one output code."""
    if x1.shape != x2.shape:
        raise PyiosoError(f"residual add of shapes {tuple(x1.shape)} and {tuple(x2.shape)}: "
                          "the two inputs must have the same shape")
    (z1, z2), (b1, b2), (m1, m2) = add.zero_points, add.in_bits, add.requant.multiplier.tolist()
    _check_codes(x1, b1, None, "residual input 1")
    _check_codes(x2, b2, None, "residual input 2")
    t = (x1.to(torch.int64) - z1) * m1 + (x2.to(torch.int64) - z2) * m2
    return _round_shift_clamp(t, add.requant)


def max_pool(x: torch.Tensor, kernel, stride, padding=(0, 0), bits: int = 8) -> torch.Tensor:
    """§5: max of codes over in-bounds taps (implicit -inf padding), same (s, z)."""
    _check_codes(x, bits, None, "max-pool input")
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    if 2 * max(pair(padding)) > min(pair(kernel)):
        raise PyiosoError(f"max-pool padding {padding} is more than half the kernel {kernel}: a "
                          "window would hold only padding")
    conv_output_size(x.shape[1:3], SimpleNamespace(kernel=pair(kernel), stride=pair(stride),
                                                   padding=pair(padding)))
    return _nhwc_int(F.max_pool2d(_nchw(x), kernel, stride, padding))


def avg_pool(x: torch.Tensor, pool: AvgPool) -> torch.Tensor:
    """§5: t = (sum of N taps - N*z) * M, padding inserts z."""
    _check_codes(x, pool.in_bits, None, "average-pool input")
    conv_output_size(x.shape[1:3], pool)
    taps = pool.kernel[0] * pool.kernel[1]
    sums = F.avg_pool2d(_pad(_nchw(x), pool.padding, pool.in_zero_point), pool.kernel,
                        pool.stride, divisor_override=1)
    t = (_nhwc_int(sums) - taps * pool.in_zero_point) * pool.requant.multiplier[0]
    return _round_shift_clamp(t, pool.requant)
