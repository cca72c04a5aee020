"""Weight rounding policies on a fixed grid: round-to-nearest, stochastic and AdaRound.

Both are modules over a fixed weight, scale and zero point (per tensor or per channel):
``forward()`` gives the fake-quantized weight, ``codes()`` its integer codes, so a
reconstruction loop can swap one policy for the other.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from golden.errors import PyiosoError
from pyioso.quant import kernels
from pyioso.quant.uniform import BINARY, broadcast_qparam, check_qparams, dequantize, qrange, quantize

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


class StochasticRounding(_WeightRounding):
    """Round up with probability equal to the fractional part (unbiased: E[code] = w/s), drawn
    once from `seed`, so the codes are fixed and reproducible."""

    def __init__(self, weight: torch.Tensor, scale, zero_point, bits: int, signed: bool,
                 ch_axis: int | None = None, seed: int = 0):
        super().__init__(weight, scale, zero_point, bits, signed, ch_axis)
        if (self.qmin, self.qmax) == BINARY:
            raise PyiosoError("stochastic rounding chooses between adjacent codes and the binary grid "
                              "{-1, +1} has none around 0: use bits >= 2")
        scaled = self.weight / self.scale
        draw = torch.rand(scaled.shape, generator=torch.Generator().manual_seed(seed), dtype=scaled.dtype)
        up = (draw < scaled - torch.floor(scaled)).to(scaled.dtype)
        self.register_buffer("code", torch.clamp(torch.floor(scaled) + up + self.zero_point, self.qmin, self.qmax))

    def codes(self) -> torch.Tensor:
        return self.code


def _h(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sigmoid(V), the stretched sigmoid before the clamp, h(V))."""
    sigma = torch.sigmoid(v)
    pre = sigma * (ZETA - GAMMA) + GAMMA
    return sigma, pre, pre.clamp(0, 1)


def _regularizer(h: torch.Tensor, beta) -> torch.Tensor:
    """sum(1 - |2h - 1|^beta)."""
    return h.numel() - (2 * h - 1).abs().pow(beta).sum()


def _soft_weight_kernel(v, floor, scale, qmin, qmax):
    """(soft weight, dW/dV / scale): the slope of h(V) where h is strictly inside (0, 1), the
    only place it is non-zero; there the clamp to the grid passes the gradient exactly when
    qmin <= floor and floor + 1 <= qmax."""
    sigma, pre, h = _h(v)
    slope = torch.where((pre > 0) & (pre < 1), sigma * (1 - sigma) * (ZETA - GAMMA), 0)
    in_grid = (floor >= qmin) & (floor + 1 <= qmax)
    return (floor + h).clamp(qmin, qmax) * scale, torch.where(in_grid, slope, 0), h, slope


def _soft_weight_reg_kernel(v, floor, scale, qmin, qmax, beta):
    """The soft weight and its slope as above, the regularizer sum(1 - |d|^beta) (d = 2h - 1)
    and its derivative in V, -2 beta sign(d) |d|^(beta - 1) * slope; |d|^(beta - 1) is computed
    once (exp-log, 0 at d = 0) and serves the value and the derivative."""
    weight, weight_slope, h, slope = _soft_weight_kernel(v, floor, scale, qmin, qmax)
    d = 2 * h - 1
    magnitude = d.abs()
    power = torch.where(magnitude > 0, torch.exp((beta - 1) * torch.log(magnitude)), 0)
    reg = h.numel() - (magnitude * power).sum()
    return weight, weight_slope, reg, -2 * beta * torch.sign(d) * power * slope


def _weight_only(v, floor, scale, qmin, qmax):
    return _soft_weight_kernel(v, floor, scale, qmin, qmax)[:2]


def _grad_kernel(grad_w, scale, weight_slope, grad_reg, reg_slope):
    return grad_w * scale * weight_slope + grad_reg * reg_slope


def _weight_grad_kernel(grad_w, scale, weight_slope):
    return grad_w * scale * weight_slope


@functools.cache
def build_kernels(device: str = "cpu") -> dict:
    """The element-wise kernels, each fused into one pass (:func:`pyioso.quant.kernels.fused`).

    Reconstruction of weight-heavy blocks on small maps is bound by these passes over V, not by
    the convolutions: fused, each operand is read once instead of a dozen times, and the forward
    pass leaves the backward pass only products to take. Built once per device type.
    """
    def warm_up(compiled):
        v, floor, linear_grad = (torch.zeros(64, 576, device=device) for _ in range(3))
        conv_grad = _as_matrix(torch.zeros(64, 64, 3, 3, device=device).contiguous(
            memory_format=torch.channels_last))
        scale = torch.ones(64, 1, device=device).expand(64, 1)
        qmin, qmax, beta = (torch.tensor(x, device=device) for x in (-2.0, 1.0, 2.0))
        _, slope, _, reg_slope = compiled["weight_reg"](v, floor, scale, qmin, qmax, beta)
        compiled["weight"](v, floor, scale, qmin, qmax)
        for grad in (conv_grad, linear_grad):       # a conv's arrives as a view of its 4-D one
            compiled["grad"](grad, scale, slope, beta, reg_slope)
            compiled["weight_grad"](grad, scale, slope)

    return kernels.fused({"weight": _weight_only, "weight_reg": _soft_weight_reg_kernel,
                          "grad": _grad_kernel, "weight_grad": _weight_grad_kernel}, warm_up, device, "AdaRound")


class _SoftRound(torch.autograd.Function):
    """AdaRound's soft weight s * clamp(floor + h(V)) and its regularizer, on [C_out, K] matrices.

    Same values and gradients as composing the ops under autograd; the forward kernel also
    gives the two slopes, so the backward pass is grad_W * s * slope_W + grad_reg * slope_reg.
    """

    @staticmethod
    def forward(ctx, v, floor, scale, qmin, qmax, beta):
        # tensors, not Python numbers, so that one compiled kernel serves every grid and beta;
        # detached, so that it holds no autograd
        v, lo, hi = v.detach(), v.new_tensor(qmin), v.new_tensor(qmax)
        if beta:
            weight, weight_slope, reg, reg_slope = build_kernels(v.device.type)["weight_reg"](
                v, floor, scale, lo, hi, v.new_tensor(beta))
        else:
            (weight, weight_slope), reg, reg_slope = build_kernels(v.device.type)["weight"](
                v, floor, scale, lo, hi), v.new_zeros(()), None
        ctx.save_for_backward(scale, weight_slope, reg_slope)
        return weight, reg

    @staticmethod
    def backward(ctx, grad_w, grad_reg):
        scale, weight_slope, reg_slope = ctx.saved_tensors
        kernels = build_kernels(grad_w.device.type)
        if reg_slope is None:
            grad = kernels["weight_grad"](grad_w, scale, weight_slope)
        else:
            grad = kernels["grad"](grad_w, scale, weight_slope, grad_reg, reg_slope)
        return grad, None, None, None, None, None


def _as_matrix(t: torch.Tensor) -> torch.Tensor:
    """A [C_out, ...] weight-shaped tensor as a [C_out, K] matrix, K in channels-last order for a
    conv weight: the layout the CPU conv takes its weight and returns the weight's gradient in,
    so that neither the forward nor the backward step converts layouts."""
    if t.dim() == 4:
        return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1)
    return t.reshape(len(t) if t.dim() else 1, -1)


def _from_matrix(m: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The inverse of :func:`_as_matrix`: a view of this shape (channels-last for 4-D)."""
    if len(shape) == 4:
        c, k, kh, kw = shape
        return m.view(c, kh, kw, k).permute(0, 3, 1, 2)
    return m.view(shape)


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
        floor = torch.floor(scaled)
        self.register_buffer("floor", _as_matrix(floor).contiguous())
        self.v = nn.Parameter(_as_matrix(torch.logit((scaled - floor - GAMMA) / (ZETA - GAMMA))).contiguous())
        self.soft = True
        self._focus = None      # (taps, columns, V of those columns, their floor) while focused
        self._hard = None       # ((V's storage, V's version), the hard weight) while V is frozen

    def _shaped(self, m: torch.Tensor) -> torch.Tensor:
        """A [C_out, K] matrix (V, floor) viewed in the weight's shape."""
        return _from_matrix(m, self.weight.shape)

    def focus(self, taps: tuple[slice, slice]) -> nn.Parameter:
        """The V a reconstruction learns when the conv's input reaches only the kernel taps
        `taps` (rows, columns; :func:`pyioso.calib.qnet.tap_crop`): a parameter of those taps'
        columns alone, until :meth:`unfocus` writes it back. The other taps multiply padding, so
        their only gradient is the regularizer's, which moves h(V) away from 0.5 and never across
        it: their code stays the nearest one, learned or not. On a 1x1 map a 3x3 kernel's V is
        nine times the work it needs to be."""
        full = (slice(0, self.weight.shape[-2]), slice(0, self.weight.shape[-1])) if self.weight.dim() == 4 else None
        if self._focus is not None:
            raise PyiosoError("AdaRound.focus() twice: unfocus() the last reconstruction first")
        if full is None or taps is None or tuple(taps) == full or not self._fused():
            return self.v
        _, k, kh, kw = self.weight.shape
        columns = torch.arange(kh * kw * k, device=self.v.device).view(kh, kw, k)[taps[0], taps[1]].reshape(-1)
        live = nn.Parameter(self.v.detach()[:, columns].contiguous(), requires_grad=self.v.requires_grad)
        self._focus = (tuple(taps), columns, live, self.floor[:, columns].contiguous())
        return live

    def unfocus(self) -> None:
        """Write the focused taps' V back into V, which also takes their requires_grad (off once
        learned: frozen, see :meth:`forward`); a no-op when not focused."""
        if self._focus is not None:
            live = self._focus[2]
            with torch.no_grad():
                self.v.index_copy_(1, self._focus[1], live)
            self.v.requires_grad_(live.requires_grad)
            self._focus = None

    def _full_v(self) -> torch.Tensor:
        """V, with the focused taps' values while focused."""
        if self._focus is None:
            return self.v
        return self.v.index_copy(1, self._focus[1], self._focus[2])

    def _fused(self) -> bool:
        """The grid the fused kernels take: symmetric, a scale per output channel or tensor."""
        return not self.zero_point.any() and self.scale.numel() in (1, len(self.v))

    def h(self) -> torch.Tensor:
        """Rectified sigmoid of V: the learned rounding offset in [0, 1]."""
        return self._shaped(_h(self._full_v())[2])

    def regularizer(self, beta: float) -> torch.Tensor:
        """sum(1 - |2 h(V) - 1|^beta): pushes every h(V) to 0 or 1; identically 0 at beta = 0."""
        return _regularizer(self.h(), beta)

    def soft_weight(self, beta: float, taps: tuple[slice, slice] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the soft fake-quantized weight, the regularizer at beta): what one reconstruction
        step needs, computed together; with `taps`, the weight of those kernel taps only (and,
        focused on them, their regularizer)."""
        crop = (slice(None), slice(None), *taps) if taps is not None else (...,)
        self._hard = None
        if not self._fused():
            return dequantize(self._code(self.h()), self.scale, self.zero_point)[crop], self.regularizer(beta)
        scale = self.scale.reshape(-1, 1).expand(len(self.v), 1)
        if self._focus is None:
            weight, reg = _SoftRound.apply(self.v, self.floor, scale, self.qmin, self.qmax, beta)
            return self._shaped(weight)[crop], reg
        focused, _, v, floor = self._focus
        if taps is None or tuple(taps) != focused:
            raise PyiosoError(f"AdaRound focused on taps {focused} was asked for {taps}: the input's size changed "
                              "within one reconstruction")
        weight, reg = _SoftRound.apply(v, floor, scale, self.qmin, self.qmax, beta)
        rows, columns = (t.stop - t.start for t in taps)
        return _from_matrix(weight, torch.Size((*self.weight.shape[:2], rows, columns))), reg

    def codes(self) -> torch.Tensor:
        return self._code((self.h() >= 0.5).to(self.floor.dtype))

    def forward(self) -> torch.Tensor:
        """The fake-quantized weight. Hard and with V frozen (requires_grad off), it is kept
        until V changes, as an activation stage runs thousands of steps on the same weight; while V
        learns it is not kept (a fused optimizer changes V without a new version)."""
        if self.soft or self._focus is not None or self.v.requires_grad:
            self._hard = None
            return super().forward()
        version = (self.v.data_ptr(), self.v._version)
        if self._hard is None or self._hard[0] != version:
            self._hard = (version, super().forward().detach())
        return self._hard[1]

    def forward_codes(self) -> torch.Tensor:
        return self._code(self.h()) if self.soft else self.codes()

    def _code(self, offset: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self._shaped(self.floor) + offset + self.zero_point, self.qmin, self.qmax)


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
