"""LSQ fake-quantization of an activation, with QDrop's drop, as one fused forward and one fused
backward pass.

value = s * (v + (round(v) - v)), v = clamp(x / s, lo, hi): the straight-through estimator for x
(clipped at the range) and LSQ's gradient for s (Esser et al. 2020). With drop p, each element
keeps its float activation (x clamped to the activation's range) where its draw is below p
(QDrop, Wei et al. 2022). Every value and gradient is the one autograd gives for that chain of
torch ops, bit for bit (tests/test_lsq.py): only the number of passes over memory changes.
"""

from __future__ import annotations

import functools
import math

import torch

from pyioso.quant import kernels

ACTIVATION_RANGE = {"none": (-math.inf, math.inf), "relu": (0.0, math.inf), "relu6": (0.0, 6.0)}


def _coded(x, s, lo, hi):
    """(u = x / s, and v = clamp(u) rounded through the straight-through form v + (round(v) - v))."""
    u = x / s
    v = u.clamp(lo, hi)
    return u, v + (torch.round(v) - v)


def _forward(x, s, lo, hi):
    return _coded(x, s, lo, hi)[1] * s


def _forward_drop(x, s, lo, hi, act_lo, act_hi, draw, drop):
    return torch.where(draw < drop, x.clamp(act_lo, act_hi), _coded(x, s, lo, hi)[1] * s)


def _backward(grad, x, s, lo, hi):
    """(dL/dx, and the two products whose sums are dL/ds: through the product with s, and through
    the division by it) for grad = dL/dvalue."""
    u, w = _coded(x, s, lo, hi)
    grad_u = torch.where((u >= lo) & (u <= hi), grad * s, 0)
    return grad_u / s, grad * w, -grad_u * (u / s)


def _backward_drop(grad, x, s, lo, hi, act_lo, act_hi, draw, drop):
    keep = draw < drop
    grad_x, by_product, by_division = _backward(torch.where(keep, 0, grad), x, s, lo, hi)
    return grad_x + torch.where(keep & (x > act_lo) & (x < act_hi), grad, 0), by_product, by_division


def _mix(draw, drop, real, quantized):
    return torch.where(draw < drop, real, quantized)


@functools.cache
def build_kernels(device: str = "cpu") -> dict:
    """The forward, backward and mixing kernels, fused (:func:`pyioso.quant.kernels.fused`)."""
    def warm_up(compiled):     # on 1-D runs as _MemoryOrder gives them, distinct tensors
        order = _MemoryOrder(torch.zeros(2, 16, 4, 4, device=device).contiguous(memory_format=torch.channels_last))
        x, grad, draw, real = (order.flat(torch.zeros(2, 16, 4, 4, device=device)) for _ in range(4))
        s, lo, hi, act_lo, act_hi, drop = (torch.tensor(v, device=device) for v in (1.0, 0.0, 15.0, 0.0, 6.0, 0.5))
        compiled["forward"](x, s, lo, hi)
        compiled["forward_drop"](x, s, lo, hi, act_lo, act_hi, draw, drop)
        compiled["backward"](grad, x, s, lo, hi)
        compiled["backward_drop"](grad, x, s, lo, hi, act_lo, act_hi, draw, drop)
        compiled["mix"](draw, drop, real, x)

    return kernels.fused({"forward": _forward, "forward_drop": _forward_drop, "backward": _backward,
                          "backward_drop": _backward_drop, "mix": _mix}, warm_up, device, "LSQ")


def _layout(t: torch.Tensor) -> torch.memory_format:
    last = t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if last else torch.contiguous_format


class _MemoryOrder:
    """A tensor's elements as one flat run in its memory order (NCHW or channels-last), and back:
    the kernels are element-wise, so one compiled kernel (1-D, any length) serves every shape and
    layout, and nothing compiles inside a timed loop."""

    def __init__(self, like: torch.Tensor):
        self.shape = like.shape
        self.last = _layout(like) == torch.channels_last

    def flat(self, t: torch.Tensor) -> torch.Tensor:
        """`t` (of the shape) as a 1-D run in this order; detached, which also makes it no view
        of `t`, so that the compiled kernels guard on a plain 1-D tensor alone."""
        if self.last:
            return t.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(-1).detach()
        return t.contiguous().view(-1).detach()

    def shaped(self, t: torch.Tensor) -> torch.Tensor:
        if self.last:
            n, c, h, w = self.shape
            return t.view(n, h, w, c).permute(0, 3, 1, 2)
        return t.view(self.shape)


def _like_where(t: torch.Tensor) -> torch.Tensor:
    """`t` laid out as torch.where(draw < drop, ...) lays out its result: like its condition, whose
    draw is NCHW. The convolutions that follow take either layout, but their sums differ in the
    last bits between the two, and QDrop's calibrations are to stay what they were."""
    return t.contiguous()


class _FakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, s, lo, hi, act_lo, act_hi, draw, drop):
        fused, order = build_kernels(x.device.type), _MemoryOrder(x)
        x, s = order.flat(x), s.detach()
        draw = None if draw is None else order.flat(draw)
        ctx.order = order
        ctx.save_for_backward(x, s, lo, hi, act_lo, act_hi, draw, drop)
        if draw is None:
            return order.shaped(fused["forward"](x, s, lo, hi))
        return _like_where(order.shaped(fused["forward_drop"](x, s, lo, hi, act_lo, act_hi, draw, drop)))

    @staticmethod
    def backward(ctx, grad):
        x, s, lo, hi, act_lo, act_hi, draw, drop = ctx.saved_tensors
        fused, grad_in, grad = build_kernels(grad.device.type), grad, ctx.order.flat(grad)
        if draw is None:
            grad_x, by_product, by_division = fused["backward"](grad, x, s, lo, hi)
        else:
            grad_x, by_product, by_division = fused["backward_drop"](grad, x, s, lo, hi, act_lo, act_hi, draw, drop)
        # summed as autograd sums them, in the memory order its ops would have laid them out in,
        # so that dL/ds is its bit for bit: the product's follows the incoming gradient (NCHW behind
        # a drop, whose draw is NCHW), the division's follows x
        shaped = ctx.order.shaped
        by_product = shaped(by_product).contiguous(memory_format=_layout(grad_in) if draw is None
                                                   else torch.contiguous_format)
        grad_s = by_product.sum_to_size(s.shape) + shaped(by_division).sum_to_size(s.shape)
        return ctx.order.shaped(grad_x), grad_s, None, None, None, None, None, None


def fake_quantize(x: torch.Tensor, s: torch.Tensor, lo: int, hi: int, activation: str, drop: float = 0.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """LSQ's fake-quantized `x` on codes lo..hi (zero point already subtracted) with step `s` (a
    0-dim tensor, positive); with `drop`, QDrop's mixture with the float activation, the draw
    taken from `generator` in x's logical (NCHW) order."""
    params = [x.new_tensor(v) for v in (lo, hi, *ACTIVATION_RANGE[activation])]
    if not drop:
        return _FakeQuant.apply(x, s, *params, None, None)
    draw = torch.rand(x.shape, generator=generator, device=x.device)
    return _FakeQuant.apply(x, s, *params, draw, x.new_tensor(drop))


def mix(quantized: torch.Tensor, real: torch.Tensor, drop: float, generator: torch.Generator) -> torch.Tensor:
    """QDrop's mixture of a block's inputs (no gradient): `real` where a draw from `generator` (in
    the tensor's logical order) is below `drop`, `quantized` elsewhere."""
    draw = torch.rand(quantized.shape, generator=generator, device=quantized.device)
    order = _MemoryOrder(quantized)
    with torch.no_grad():
        mixed = build_kernels(quantized.device.type)["mix"](order.flat(draw), quantized.new_tensor(drop),
                                                             order.flat(real), order.flat(quantized))
    return _like_where(order.shaped(mixed))
