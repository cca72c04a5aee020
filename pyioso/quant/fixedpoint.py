"""Float layer -> integer tables (M, B, F) of ARCHITECTURE §3 and §5, with the §7 checks.

Everything runs in float64 with round-half-up, so the same floats give the same integers on
every machine.
"""

from __future__ import annotations

import math

import torch

import golden
from golden.errors import PyiosoError
from golden.layers import check_accumulator, check_bn_product
from golden.meaning import FloatConv
from golden.spec import MAX_ROUNDING_SLACK, MAX_SHIFT, W_ACC, W_M


def rhu(x: torch.Tensor) -> torch.Tensor:
    """Round half up, float64 -> int64."""
    return torch.floor(x.to(torch.float64) + 0.5).to(torch.int64)


def fixed_point(values: torch.Tensor, width: int = W_M) -> tuple[torch.Tensor, int]:
    """Largest F in 1..62 with every |rhu(v * 2^F)| <= 2^(width-1) - 1; returns (ints, F)."""
    values = values.to(torch.float64)
    if not torch.isfinite(values).all():
        raise PyiosoError("fixed-point conversion got a non-finite scale: check the layer's "
                          "scales and BN statistics")
    limit = 2 ** (width - 1) - 1
    peak = values.abs().max().item() if values.numel() else 0.0
    if peak == 0.0:
        return torch.zeros_like(values, dtype=torch.int64), width - 1
    shift = min(MAX_SHIFT, math.floor(math.log2(limit / peak)))
    while shift >= 1 and rhu(values * 2.0 ** shift).abs().max().item() > limit:
        shift -= 1
    if shift < 1:
        raise PyiosoError(f"a multiplier of {peak:.3g} needs more than {width - 1} integer bits: "
                          "the output scale is too small for this layer's input and weight "
                          "scales; widen the output range")
    return rhu(values * 2.0 ** shift), shift


def scaled_weights(fc: FloatConv) -> torch.Tensor:
    return golden.layers.scaled_weights(fc.weight, fc.codes(), fc.isg_shift, fc.groups)


def rounding_slack(fc: FloatConv, shift: int) -> torch.Tensor:
    """§3 per channel: (|S_c|max + 2) 2^-(F+1), what the tables add to the 1/2 of rounding."""
    centred = max(fc.in_zero_point, 2 ** fc.in_bits - 1 - fc.in_zero_point)
    s_c = centred * scaled_weights(fc).abs().sum(1)
    return (s_c + 2).to(torch.float64) * 2.0 ** -(shift + 1)


def offset_table(b: torch.Tensor, shift: int, out_zero_point: int) -> torch.Tensor:
    """§3: rhu(b 2^F), moved by at most one unit so that rhu(B / 2^F) is the fake-quant code.

    A channel whose inputs all sit at the zero-point (S_c = 0, e.g. a dead channel) outputs
    rhu(B / 2^F) at every pixel; without the move, a b within 2^-(F+1) of a half-integer lands on
    the other side of it from round(b + z_out) - z_out, and one dead channel then shifts a whole
    feature map by a code.
    """
    b = b.to(torch.float64)
    half = 2 ** (shift - 1)
    centre = (torch.round(b + out_zero_point).to(torch.int64) - out_zero_point) * 2 ** shift
    return rhu(b * 2.0 ** shift).clamp(centre - half, centre + half - 1)


def conv_requant(fc: FloatConv, acc_width: int = W_ACC) -> golden.Requant:
    """M_k, B_k, F for a float conv (§3), refusing tables that overflow §7's widths."""
    lo, hi = fc.clamp_bounds()
    multiplier, shift = fixed_point(fc.alpha_prime() / fc.out_scale)
    scaled = scaled_weights(fc)
    offset = (offset_table(fc.beta_prime() / fc.out_scale, shift, fc.out_zero_point)
              - fc.in_zero_point * scaled.sum(1) * multiplier)   # z * C_k * M_k folded in
    requant = golden.Requant(multiplier, offset, shift, fc.out_zero_point, fc.out_bits, lo, hi)
    check_accumulator(scaled, fc.in_bits, acc_width)
    check_bn_product(scaled, fc.in_bits, requant, acc_width + W_M + 1)
    _check_rounding(fc, shift)
    return requant


def _check_rounding(fc: FloatConv, shift: int) -> None:
    slack = rounding_slack(fc, shift).max().item()
    if slack > MAX_ROUNDING_SLACK:
        raise PyiosoError(f"fixed-point tables would add up to {slack:.3g} codes of error "
                          f"(limit {MAX_ROUNDING_SLACK}, ARCHITECTURE §3): the layer's scale "
                          f"ratios are too extreme for a {W_M}-bit multiplier")


def integer_conv(fc: FloatConv, acc_width: int = W_ACC) -> golden.Conv:
    """The integer layer golden runs for a float layer."""
    return golden.Conv(fc.weight.to(torch.int64), fc.w_bits, fc.in_bits, fc.in_zero_point,
                       fc.isg_shift, fc.codes(), conv_requant(fc, acc_width), fc.stride,
                       fc.padding, fc.dilation, fc.groups)


def add_requant(scales: tuple[float, float], zero_points: tuple[int, int],
                in_bits: tuple[int, int], out_scale: float, out_zero_point: int,
                out_bits: int, relu: bool) -> golden.Add:
    """§5 residual add: M_i = rhu(s_i / s_out * 2^F)."""
    multiplier, shift = fixed_point(torch.tensor(scales, dtype=torch.float64) / out_scale)
    lo, hi = golden.activation_bounds("relu" if relu else "none", out_bits, out_zero_point, out_scale)
    rq = golden.Requant(multiplier, torch.zeros(2, dtype=torch.int64), shift, out_zero_point,
                        out_bits, lo, hi)
    return golden.Add(tuple(zero_points), tuple(in_bits), rq)


def avg_pool_requant(kernel, stride, padding, in_scale: float, in_zero_point: int, in_bits: int,
                     out_scale: float, out_zero_point: int, out_bits: int) -> golden.AvgPool:
    """§5 average pool: M = rhu(s_in / (N * s_out) * 2^F)."""
    taps = kernel[0] * kernel[1]
    multiplier, shift = fixed_point(torch.tensor([in_scale / (taps * out_scale)], dtype=torch.float64))
    rq = golden.Requant(multiplier, torch.zeros(1, dtype=torch.int64), shift, out_zero_point,
                        out_bits, 0, 2 ** out_bits - 1)
    return golden.AvgPool(tuple(kernel), tuple(stride), tuple(padding), in_bits, in_zero_point, rq)
