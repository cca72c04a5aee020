"""A calibrated QNet as the integer network the hardware runs (ARCHITECTURE §3-§5).

Each conv/FC becomes golden.Conv through pyioso.quant.fixedpoint (M, B, F with the OSO and ISG folded
in), adds and pools their §5 tables. Then the ISG groups are made contiguous (§4): every
permutable tensor class is stored in group order, its permutation folded into the producers'
output channels and the consumers' input channels; a class in a pinned order already has one
group per K-tile. The result runs in golden with no float model.
"""

from __future__ import annotations

import torch

import golden
from golden.errors import PyiosoError
from golden.meaning import FloatConv
from golden.layers import uniform_tiles
from golden.spec import GRANULARITY
from pyioso.calib.isg import storage_order
from pyioso.calib.qnet import QConv, QNet
from pyioso.integer import intnet
from pyioso.quant.fixedpoint import add_requant, avg_pool_requant, integer_conv
from pyioso.quant.layer import Coding


def integer_network(net: QNet, granularity: int = GRANULARITY) -> tuple[intnet.IntNet, dict[str, torch.Tensor]]:
    """(the integer network in storage order, permutation of every permuted tensor)."""
    if not net.input_quant.enabled:
        raise PyiosoError("the network's activations are not quantized (weight-only calibration): "
                          "the integer network needs activation codes; calibrate with --abits 2..8")
    floats = [t for t in (net.input_name, *(n.output for n in net.nodes)) if net.coding(t).kept_float]
    if floats:
        raise PyiosoError(f"this calibration keeps {len(floats)} tensors float ({', '.join(floats[:3])}, ...: "
                          "--act-points reference), which the integer engine stores as codes: calibrate with "
                          "--act-points engine to export")
    perms = _permutations(net, granularity)
    steps, codings = [], {net.input_name: net.input_quant.coding()}
    for node in net.nodes:
        try:
            op = _integer_op(net, node)
        except PyiosoError as err:          # name the layer: the tables are built per layer
            raise PyiosoError(f"{node.name}: {err}") from None
        if isinstance(op, golden.Conv):
            if op.groups == 1 and node.inputs[0] in perms:
                op = op.permute_inputs(perms[node.inputs[0]])
            if node.output in perms:
                op = op.permute_outputs(perms[node.output])
        steps.append(intnet.Step(node.name, op, node.inputs, node.output))
        codings[node.output] = net.coding(node.output).coding()
    return intnet.IntNet(tuple(steps), codings, net.input_name, net.output_name), perms


def _permutations(net: QNet, granularity: int) -> dict[str, torch.Tensor]:
    """Storage order of every tensor whose class has a learned grouping (§4)."""
    perms = {}
    for cid, scale in net.input_scales.items():
        if scale.mode == "free":
            raise PyiosoError("the network uses ungrouped (free) input-channel scales, which the "
                              "integer hardware cannot run: calibrate with --input-scale grouped")
        if scale.mode != "hard":
            continue
        if int(cid) not in net.permutable:
            if not uniform_tiles(scale.codes, granularity):
                raise PyiosoError(f"tensor class {cid} mixes ISG groups inside a K-tile")
            continue
        perm, _, _ = storage_order(scale.codes, granularity)
        for tensor, c in net.class_of.items():
            if c == int(cid):
                perms[tensor] = perm
    return perms


def isg_codes(net: QNet, node) -> torch.Tensor | None:
    scale = net.input_scale(node)
    return scale.codes.clone() if scale is not None and scale.mode == "hard" else None


def float_conv(module: QConv, x: Coding, y: Coding, shift: int,
               codes: torch.Tensor | None) -> FloatConv:
    """The spec's float layer (golden.meaning) of a calibrated conv: what its fake quantization
    computes, and what the fixed-point tables approximate within §3's bound."""
    f64 = lambda t: t.detach().to(torch.float64).flatten()  # noqa: E731
    if not module.symmetric:
        raise PyiosoError("this calibration used --weight-grid asymmetric (a zero point per output channel), "
                          "which the integer engine does not run: calibrate with the symmetric grid to export")
    if module.levels in ("kmeans", "ttq"):
        what = {"kmeans": "a float codebook per layer", "ttq": "a positive and a negative scale per channel"}
        raise PyiosoError(f"this calibration used --weight-levels {module.levels} ({what[module.levels]}), which no "
                          "integer network computes: calibrate with uniform, ternary or binary weights to export")
    dense = module.dense
    return FloatConv(
        weight=module.weight_codes().permute(0, 2, 3, 1).contiguous(), w_scale=f64(module.w_scale),
        w_bits=module.w_bits, in_scale=x.scale, in_zero_point=x.zero_point, in_bits=x.bits,
        out_scale=y.scale, out_zero_point=y.zero_point, out_bits=y.bits, bias=f64(module.bias),
        isg_shift=shift if dense else 0,
        isg_codes=(codes if codes is not None else torch.zeros(module.weight.shape[1], dtype=torch.int64))
        if dense else None,
        oso_scale=f64(module.oso_scale) if module.oso else None,
        oso_offset=f64(module.oso_offset) if module.oso else None,
        activation=module.activation, **module.geometry)


def _integer_op(net: QNet, node):
    module = net.op(node)
    x = net.coding(node.inputs[0]).coding()
    if isinstance(module, QConv):
        return integer_conv(float_conv(module, x, module.act.coding(), net.isg_shift,
                                       isg_codes(net, node)))
    if node.kind == "add":
        x2, y = net.coding(node.inputs[1]).coding(), module.act.coding()
        return add_requant((x.scale, x2.scale), (x.zero_point, x2.zero_point), (x.bits, x2.bits),
                           y.scale, y.zero_point, y.bits, relu=module.act.activation == "relu")
    if node.kind == "max_pool":
        return module.pool
    y = module.act.coding()
    return avg_pool_requant(module.kernel, module.kernel, (0, 0), x.scale, x.zero_point, x.bits,
                            y.scale, y.zero_point, y.bits)
