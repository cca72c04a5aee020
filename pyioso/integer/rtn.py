"""A whole network as integer layers by round to nearest, run by golden alone.

The network is lowered (pyioso.lowering.plan); activation codings are calibrated on its own
float tensors (MSE observer, one (s, z) per tensor), weights per output channel, and every dense
conv gets the fixed hardware ISG split of pyioso.quant.layer. The result is what the engine
would run layer by layer, so each layer's golden input and output can be replayed on the RTL.
"""

from __future__ import annotations

import torch
from torch import nn

import golden
from golden.spec import ISG_SHIFT
from pyioso.data.datasets import sample_photos
from pyioso.integer.intnet import IntNet, Step
from pyioso.lowering.plan import Lowered, Op, check_fc_input, lower, max_pool, pool_kernel
from pyioso.models import tv
from pyioso.quant.fixedpoint import add_requant, avg_pool_requant, integer_conv
from pyioso.quant.layer import Coding, float_conv, observe_coding


def build(net: str, size: int = 224, w_bits: int = 4, a_bits: int = 4, seed: int = 0,
          images: int = 4, isg_shift: int = ISG_SHIFT) -> IntNet:
    """The seeded network `net` calibrated on `images` Fashion-MNIST photos of size x size."""
    model = tv.build_model(net, seed=seed)
    return from_model(model, sample_photos(images, size, seed), w_bits, a_bits, isg_shift)


def from_model(model: nn.Module, images: torch.Tensor, w_bits: int = 4, a_bits: int = 4,
               isg_shift: int = ISG_SHIFT) -> IntNet:
    """Any traceable model (put in eval mode) made of the lowering's SUPPORTED ops, ending in a
    Linear classifier, calibrated on the float NCHW `images`."""
    low = lower(model, images, w_bits, a_bits)
    codings = {low.input: observe_coding(low.floats[low.input], low.act_bits(low.input))}
    for op in low.ops:      # §5: a max pool's output keeps its input's coding
        codings[op.output] = codings[op.inputs[0]] if op.kind == "max_pool" else observe_coding(
            low.floats[op.output], low.act_bits(op.output))
    steps = tuple(Step(op.name, _golden_op(low, op, codings, isg_shift),
                       tuple(n.name for n in op.inputs), op.output.name) for op in low.ops)
    return IntNet(steps, {n.name: c for n, c in codings.items()}, low.input.name,
                  low.last.output.name)


def _golden_op(low: Lowered, op: Op, codings: dict, isg_shift: int):
    x, y = codings[op.inputs[0]], codings[op.output]
    if op.kind in ("conv", "fc"):
        return _conv(low, op, x, y, isg_shift)
    if op.kind == "add":
        x2 = codings[op.inputs[1]]
        return add_requant((x.scale, x2.scale), (x.zero_point, x2.zero_point), (x.bits, x2.bits),
                           y.scale, y.zero_point, y.bits, relu=op.output is not op.node)
    if op.kind == "max_pool":
        return max_pool(low.module(op), x.bits)
    kernel = pool_kernel(op, low.floats)
    return avg_pool_requant(kernel, kernel, (0, 0), x.scale, x.zero_point, x.bits,
                            y.scale, y.zero_point, y.bits)


def _conv(low: Lowered, op: Op, x: Coding, y: Coding, isg_shift: int) -> golden.Conv:
    """The conv or linear at op.node with its BN folded, as fixedpoint's integer layer (§3)."""
    if op.kind == "fc":
        check_fc_input(op.node.target, low.floats[op.inputs[0]])
    return integer_conv(float_conv(low.module(op), low.bn(op), op.tail.activation, x, y,
                                   low.weight_bits(op), isg_shift))
