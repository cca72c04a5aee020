"""Uniform quantizer: integer grids, the code convention, granularities and its gradients.

Code convention (the project spec; golden/ and hw/ rely on it bit for bit)::

    code    = clamp(round(x / s) + z, qmin, qmax)      # torch.round: half to even
    dequant = (code - z) * s

``round(x / s) + z`` is not ``round(x / s + z)``: half-to-even is not shift invariant, so the
zero point is added after rounding.

Grids (:func:`qrange`): signed grids are symmetric (z = 0, qmin = -2^(b-1), qmax = 2^(b-1) - 1);
unsigned grids are asymmetric (qmin = 0, qmax = 2^b - 1, integer z in [0, qmax]). Signed 1-bit
is the binary grid {-1, +1} (sign quantization, 0 -> +1): the only 2-code signed grid that is
symmetric about zero, so ``(qmin, qmax) == (-1, 1)`` always means binary, never ternary.

Granularity is carried by the shape of ``scale`` / ``zero_point``: a scalar (per tensor), a
vector along ``ch_axis`` (per channel), or any tensor that broadcasts against ``x`` with
``ch_axis=None``. The calibrator's fake quantizers (pyioso.calib.qnet: ActQuant for activations,
the rounding modules of pyioso.quant.rounding for weights) build on these functions.
"""

from __future__ import annotations

import torch

from golden.errors import PyiosoError

BINARY = (-1, 1)


def qrange(bits: int, signed: bool) -> tuple[int, int]:
    """(qmin, qmax) of the b-bit grid; the one place bit widths are validated."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise PyiosoError(f"bits={bits!r} is out of range: use an integer in 1..8")
    if not signed:
        return 0, 2 ** bits - 1
    return BINARY if bits == 1 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def check_grid(qmin: int, qmax: int) -> None:
    """Raise PyiosoError unless [qmin, qmax] is an integer grid holding 0 and a positive code."""
    if not (isinstance(qmin, int) and isinstance(qmax, int) and qmin <= 0 < qmax):
        raise PyiosoError(f"grid [{qmin}, {qmax}] is not an integer grid with qmin <= 0 < qmax: "
                          "use qrange(bits, signed)")


def safe_scale(scale: torch.Tensor) -> torch.Tensor:
    """Floor a scale at float eps (as torch.ao does) so an all-zero range still quantizes."""
    return scale.clamp_min(torch.finfo(scale.dtype).eps)


def qparams_from_range(lo: torch.Tensor, hi: torch.Tensor, qmin: int,
                       qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero_point) that map the clipping range [lo, hi] onto the grid.

    The range is widened to include 0 so that 0 is exact. Signed grids: s = max(-lo, hi) / qmax
    (the lecture's S = |r|max / qmax), z = 0. Unsigned grids: s = (hi - lo) / (qmax - qmin),
    z = clamp(round(-lo / s), qmin, qmax).
    """
    check_grid(qmin, qmax)
    lo, hi = torch.as_tensor(lo).clamp(max=0), torch.as_tensor(hi).clamp(min=0)
    if qmin < 0:
        scale = safe_scale(torch.maximum(-lo, hi) / qmax)
        return scale, torch.zeros_like(scale)
    scale = safe_scale((hi - lo) / (qmax - qmin))
    return scale, torch.clamp(torch.round(-lo / scale) + qmin, qmin, qmax)


def check_qparams(scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> None:
    """Raise PyiosoError unless scale > 0 and zero_point is an integer on the grid."""
    check_grid(qmin, qmax)
    scale, zero_point = torch.as_tensor(scale), torch.as_tensor(zero_point)
    if not bool(torch.all(torch.isfinite(scale) & (scale > 0))):
        raise PyiosoError(f"scale must be finite and > 0, got min {float(scale.min()):.4g}: "
                          "calibrate it with an observer or floor it with safe_scale")
    if not bool(torch.all((zero_point == torch.round(zero_point))
                          & (zero_point >= qmin) & (zero_point <= qmax))):
        raise PyiosoError(f"zero_point must be an integer in [{qmin}, {qmax}], got values in "
                          f"[{float(zero_point.min())}, {float(zero_point.max())}]: "
                          "use qparams_from_range or an observer")
    if (qmin, qmax) == BINARY and bool(torch.any(zero_point != 0)):
        raise PyiosoError("the binary grid {-1, +1} is symmetric: use zero_point=0")


def channel_axis(ch_axis: int, ndim: int) -> int:
    """``ch_axis`` normalized to 0..ndim-1."""
    if not -ndim <= ch_axis < ndim:
        raise PyiosoError(f"ch_axis={ch_axis} is out of range for a {ndim}-d tensor: "
                          f"use -{ndim}..{ndim - 1}")
    return ch_axis % ndim


def broadcast_qparam(t, x: torch.Tensor, ch_axis: int | None,
                     name: str = "qparam") -> torch.Tensor:
    """``t`` (scale, zero point...) in x's dtype, shaped to broadcast against ``x``.

    A scalar applies to the whole tensor. Otherwise, with ``ch_axis`` it must be one value per
    channel and is laid along that axis; without, it must have x's number of dims and broadcast
    (e.g. a per-element group scale).
    """
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        return t
    if ch_axis is None:     # same rank: a bare vector must not pair with x's last axis silently
        if t.dim() != x.dim() or any(n not in (1, m) for n, m in zip(t.shape, x.shape)):
            raise PyiosoError(f"{name} of shape {tuple(t.shape)} does not broadcast to x of shape "
                              f"{tuple(x.shape)}: pass a scalar, a tensor of {x.dim()} dims "
                              "that broadcasts, or ch_axis for per-channel")
        return t
    axis = channel_axis(ch_axis, x.dim())
    if t.numel() != x.shape[axis] or t.dim() > 1:
        raise PyiosoError(f"per-channel {name} needs {x.shape[axis]} values (x.shape[{ch_axis}]), "
                          f"got shape {tuple(t.shape)}: calibrate it along the same axis")
    shape = [1] * x.dim()
    shape[axis] = -1
    return t.reshape(shape)


def quantize(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int,
             ch_axis: int | None = None) -> torch.Tensor:
    """Integer codes (in x's float dtype) by the code convention.

    Differentiable by the clipped straight-through estimator: the input is clamped to the
    grid *before* rounding (as in LSQ), so d code / dx = 1/s inside [qmin, qmax] and 0 outside,
    and the scale gets the LSQ gradient through :func:`fake_quantize`.
    """
    if not x.is_floating_point():
        raise PyiosoError(f"x has dtype {x.dtype}: quantize a floating-point tensor")
    s = broadcast_qparam(scale, x, ch_axis, "scale")
    z = broadcast_qparam(zero_point, x, ch_axis, "zero_point")
    check_qparams(s, z, qmin, qmax)
    v = torch.clamp(x / s, qmin - z, qmax - z)
    rounded = torch.where(v >= 0, 1.0, -1.0) if (qmin, qmax) == BINARY else torch.round(v)
    return rounded + (v - v.detach()) + z


def dequantize(code: torch.Tensor, scale, zero_point, ch_axis: int | None = None) -> torch.Tensor:
    """(code - z) * s."""
    z = broadcast_qparam(zero_point, code, ch_axis, "zero_point")
    return (code - z) * broadcast_qparam(scale, code, ch_axis, "scale")


def fake_quantize(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int,
                  ch_axis: int | None = None) -> torch.Tensor:
    """dequantize(quantize(x)): the float value the integer pipeline represents."""
    return dequantize(quantize(x, scale, zero_point, qmin, qmax, ch_axis), scale, zero_point,
                      ch_axis)
