"""The float meaning of the integer layers (ARCHITECTURE §3, §5).

`FloatConv` is the real layer the calibrator trains: dequantized inputs and weights, ISG scales,
BN, OSO. Its `real_code` is rho, the exact output code before rounding, computed in float64 on
real values with zero padding (independently of the integer path, which pads with the
zero-point). The integer layer built from it must stay within the spec's bound of rho.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from golden.layers import activation_bounds, check_conv_geometry, check_bits, check_zero_point, weight_input_channels


@dataclass(frozen=True)
class FloatConv:
    weight: torch.Tensor        # integer weight codes [C_out, KH, KW, C_in/groups]
    w_scale: torch.Tensor       # s_w per output channel
    w_bits: int
    in_scale: float
    in_zero_point: int
    in_bits: int
    out_scale: float
    out_zero_point: int
    out_bits: int
    bias: torch.Tensor          # beta per output channel (BN folded)
    isg_shift: int = 0
    isg_codes: torch.Tensor | None = None   # per input channel; None = all zero (no ISG)
    bn_scale: torch.Tensor | None = None    # extra per-channel factor of alpha; None = 1
    oso_scale: torch.Tensor | None = None   # gamma^z; None = 1
    oso_offset: torch.Tensor | None = None  # phi^z; None = 0
    activation: str = "none"
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self):
        check_conv_geometry(self)
        check_bits(self.out_bits, "output bits")
        check_zero_point(self.out_zero_point, self.out_bits, "output zero-point")
        self.clamp_bounds()

    @property
    def c_in(self) -> int:
        return self.weight.shape[3] * self.groups

    def codes(self) -> torch.Tensor:
        if self.isg_codes is None:
            return torch.zeros(self.c_in, dtype=torch.int64)
        return self.isg_codes.to(torch.int64)

    def _per_channel(self, name: str, default: float) -> torch.Tensor:
        t = getattr(self, name)
        if t is None:
            return torch.full((self.weight.shape[0],), default, dtype=torch.float64)
        return t.to(torch.float64)

    def alpha_prime(self) -> torch.Tensor:
        """alpha'_k = gamma^z_k * alpha_k / 2^n with alpha_k = s_w[k] * s_x * bn_scale_k."""
        alpha = self.w_scale.to(torch.float64) * self.in_scale * self._per_channel("bn_scale", 1.0)
        return self._per_channel("oso_scale", 1.0) * alpha / 2 ** self.isg_shift

    def beta_prime(self) -> torch.Tensor:
        """beta'_k = gamma^z_k * beta_k + phi^z_k."""
        return (self._per_channel("oso_scale", 1.0) * self.bias.to(torch.float64)
                + self._per_channel("oso_offset", 0.0))

    def clamp_bounds(self) -> tuple[int, int]:
        return activation_bounds(self.activation, self.out_bits, self.out_zero_point, self.out_scale)

    def real_code(self, x: torch.Tensor) -> torch.Tensor:
        """rho [N, Ho, Wo, C_out] for input codes x (NHWC), before rounding and clamping."""
        x_hat = self.in_scale * (x.permute(0, 3, 1, 2).to(torch.float64) - self.in_zero_point)
        gamma = 1 + self.codes().to(torch.float64) / 2 ** self.isg_shift
        chan = weight_input_channels(self.weight.shape, self.groups)
        w_hat = (self.weight.to(torch.float64) * self.w_scale.to(torch.float64)[:, None, None, None]
                 * gamma[chan][:, None, None, :])
        y = F.conv2d(x_hat, w_hat.permute(0, 3, 1, 2), stride=self.stride,
                     padding=self.padding, dilation=self.dilation, groups=self.groups)
        bn = self._per_channel("bn_scale", 1.0)[:, None, None]
        r = (self._per_channel("oso_scale", 1.0)[:, None, None]
             * (bn * y + self.bias.to(torch.float64)[:, None, None])
             + self._per_channel("oso_offset", 0.0)[:, None, None])
        return (r / self.out_scale + self.out_zero_point).permute(0, 2, 3, 1)

    def output_codes(self, x: torch.Tensor) -> torch.Tensor:
        """The fake-quant output: clamp(round(rho), lo, hi), round half to even (§1)."""
        lo, hi = self.clamp_bounds()
        return torch.clamp(torch.round(self.real_code(x)), lo, hi).to(torch.int64)


def add_real_code(x1, s1, z1, x2, s2, z2, s_out, z_out) -> torch.Tensor:
    """rho of a residual add: the real sum divided by the output scale, plus z_out."""
    real = s1 * (x1.to(torch.float64) - z1) + s2 * (x2.to(torch.float64) - z2)
    return real / s_out + z_out


def avg_pool_real_code(x, kernel, stride, padding, s_in, z_in, s_out, z_out) -> torch.Tensor:
    """rho of an average pool (real zero padding counted in the divisor, as the spec's z)."""
    x_hat = s_in * (x.permute(0, 3, 1, 2).to(torch.float64) - z_in)
    mean = F.avg_pool2d(x_hat, kernel, stride, padding, count_include_pad=True)
    return (mean / s_out + z_out).permute(0, 2, 3, 1)
