"""Weight rounding policies on a fixed grid: round-to-nearest and AdaRound.

Both are modules over a fixed weight, scale and zero point (per tensor or per channel):
``forward()`` gives the fake-quantized weight, ``codes()`` its integer codes, so a
reconstruction loop can swap one policy for the other.
"""

from __future__ import annotations

import torch
from torch import nn

from pyioso.errors import PyiosoError
from pyioso.quant import BINARY, broadcast_qparam, check_qparams, dequantize, qrange, quantize

ZETA, GAMMA = 1.1, -0.1     # stretch of the rectified sigmoid (Louizos et al. 2018; AdaRound)


class _WeightRounding(nn.Module):
    """A weight and its grid; subclasses decide which code each weight gets."""

    def __init__(self, weight: torch.Tensor, scale, zero_point, bits: int, signed: bool,
                 ch_axis: int | None = None):
        super().__init__()
        self.qmin, self.qmax = qrange(bits, signed)
        weight = weight.detach().clone()
        self.register_buffer("weight", weight)
        self.register_buffer("scale", broadcast_qparam(scale, weight, ch_axis, "scale").clone())
        self.register_buffer("zero_point",
                             broadcast_qparam(zero_point, weight, ch_axis, "zero_point").clone())
        check_qparams(self.scale, self.zero_point, self.qmin, self.qmax)

    def codes(self) -> torch.Tensor:
        """Hard integer codes (float dtype) in [qmin, qmax]."""
        raise NotImplementedError

    def forward(self) -> torch.Tensor:
        """The fake-quantized weight."""
        return dequantize(self.forward_codes(), self.scale, self.zero_point)

    def forward_codes(self) -> torch.Tensor:
        """The codes ``forward`` dequantizes: the hard ones unless a subclass relaxes them."""
        return self.codes()


class NearestRounding(_WeightRounding):
    """Round to nearest (half to even): the code convention itself."""

    def codes(self) -> torch.Tensor:
        return quantize(self.weight, self.scale, self.zero_point, self.qmin, self.qmax)


class _SoftRound(torch.autograd.Function):
    """AdaRound's soft weight s * clamp(floor + h(V)) and its regularizer in one pass.

    Same values and gradients as composing the ops under autograd (where h(V) is strictly
    inside (0, 1), the only place either gradient is non-zero, the clamp to the grid passes the
    gradient exactly when qmin <= floor and floor + 1 <= qmax), with a third of the memory
    passes: reconstruction of small maps spends most of its time here, not in the convs.
    """

    @staticmethod
    def forward(ctx, v, floor, scale, in_grid, qmin, qmax, beta):
        sigma = torch.sigmoid(v)
        pre = sigma * (ZETA - GAMMA) + GAMMA
        h = pre.clamp(0, 1)
        weight = (floor + h).clamp_(qmin, qmax).mul_(scale)
        if beta:
            d = 2 * h - 1
            powered = d.abs().pow_(beta)
            reg = powered.numel() - powered.sum()
        else:
            d = powered = None
            reg = v.new_zeros(())
        ctx.save_for_backward(sigma, pre, scale, in_grid, d, powered)
        ctx.beta = beta
        return weight, reg

    @staticmethod
    def backward(ctx, grad_w, grad_reg):
        sigma, pre, scale, in_grid, d, powered = ctx.saved_tensors
        grad_h = grad_w * scale * in_grid
        if ctx.beta:    # d/dh of -|2h - 1|^beta, zero at h = 1/2 for beta > 1
            grad_h -= grad_reg * 2 * ctx.beta * torch.where(d != 0, powered / d, 0)
        slope = sigma * (1 - sigma) * (ZETA - GAMMA) * ((pre > 0) & (pre < 1))
        return grad_h * slope, None, None, None, None, None, None


class AdaRound(_WeightRounding):
    """Learned up-or-down rounding (Nagel et al. 2020): code = clamp(floor(w/s) + h(V) + z).

    h(V) = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1) with zeta = 1.1, gamma = -0.1; V starts
    where h(V) equals the fractional part of w/s, so the soft weight starts at w (inside the
    grid). While ``soft`` is True, ``forward`` uses h(V) and is differentiable in V; set it to
    False once learned to use hard rounding, h(V) >= 0.5 (what ``codes`` always returns).
    """

    def __init__(self, weight: torch.Tensor, scale, zero_point, bits: int, signed: bool,
                 ch_axis: int | None = None):
        super().__init__(weight, scale, zero_point, bits, signed, ch_axis)
        if (self.qmin, self.qmax) == BINARY:
            raise PyiosoError("AdaRound chooses between adjacent codes and the binary grid "
                              "{-1, +1} has none around 0: use bits >= 2 or NearestRounding")
        scaled = self.weight / self.scale
        self.register_buffer("floor", torch.floor(scaled))
        self.register_buffer("in_grid", ((self.floor >= self.qmin) & (self.floor + 1 <= self.qmax)
                                         ).to(weight.dtype))
        self.v = nn.Parameter(torch.logit((scaled - self.floor - GAMMA) / (ZETA - GAMMA)))
        self.soft = True

    def h(self) -> torch.Tensor:
        """Rectified sigmoid of V: the learned rounding offset in [0, 1]."""
        return torch.clamp(torch.sigmoid(self.v) * (ZETA - GAMMA) + GAMMA, 0, 1)

    def regularizer(self, beta: float) -> torch.Tensor:
        """sum(1 - |2 h(V) - 1|^beta): pushes every h(V) to 0 or 1; identically 0 at beta = 0."""
        return (1 - (2 * self.h() - 1).abs().pow(beta)).sum()

    def soft_weight(self, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(the soft fake-quantized weight, the regularizer at beta): what one reconstruction
        step needs, computed together."""
        if self.zero_point.any():
            return dequantize(self._code(self.h()), self.scale, self.zero_point), self.regularizer(beta)
        return _SoftRound.apply(self.v, self.floor, self.scale, self.in_grid, self.qmin,
                                self.qmax, beta)

    def codes(self) -> torch.Tensor:
        return self._code((self.h() >= 0.5).to(self.floor.dtype))

    def forward_codes(self) -> torch.Tensor:
        return self._code(self.h()) if self.soft else self.codes()

    def _code(self, offset: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.floor + offset + self.zero_point, self.qmin, self.qmax)


class BetaSchedule:
    """AdaRound's regularizer exponent beta per iteration, as in AdaRound/BRECQ.

    During the first ``warmup`` fraction of ``iters`` there is no regularization (beta = 0 makes
    :meth:`AdaRound.regularizer` zero); then beta falls linearly from ``start`` at the end of
    warm-up to ``end`` at ``iters`` (BRECQ's LinearTempDecay, b_range = (20, 2)).
    """

    def __init__(self, iters: int, warmup: float = 0.2, start: float = 20.0, end: float = 2.0):
        if iters < 1 or not 0 <= warmup < 1 or not start >= end > 0:
            raise PyiosoError(f"BetaSchedule(iters={iters}, warmup={warmup}, start={start}, "
                              f"end={end}) is invalid: need iters >= 1, 0 <= warmup < 1 and "
                              "start >= end > 0")
        self.iters, self.start, self.end = iters, start, end
        self.warmup_iters = warmup * iters

    def __call__(self, t: int) -> float:
        """beta at iteration ``t`` (0-based)."""
        if t < self.warmup_iters:
            return 0.0
        progress = (t - self.warmup_iters) / (self.iters - self.warmup_iters)
        return self.end + (self.start - self.end) * max(0.0, 1.0 - progress)
