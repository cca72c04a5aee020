"""A calibrated network as a standard QDQ ONNX model (QuantizeLinear/DequantizeLinear around
every quantized tensor, integer weight initializers), for runtimes like onnxruntime.

The graph mirrors the fake-quant network (pyioso.calib.qnet) op for op:
- weights: their integer codes (int8, or uint8 with a zero point per channel on the asymmetric
  grid) through a per-output-channel DequantizeLinear whose scale is s_w times OSO's gamma^z; OSO's
  phi^z and gamma^z fold into the Conv bias (b gamma^z + phi^z). Folding is exact in real numbers;
  in float32 it moves the last bit, which is why predictions agree with the fake-quant network
  on almost every image rather than all (measured: docs/API.md, ONNX).
- ISG's per-input-channel scales (1 + s 2^-n) cannot fold into a per-output-channel
  DequantizeLinear: they are a constant Mul on the dequantized weight.
- activations: the activation (Relu, or Clip 0..6 for ReLU6), then QuantizeLinear and
  DequantizeLinear as uint8 with the tensor's zero point, then a Clip to the b-bit code range
  for b < 8 (the coding's clamp bounds; opset 13 has no 4-bit type).
- an FC layer is a 1x1 Conv on the pooled [N, C, 1, 1] map; the logits are flattened at the end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from golden.errors import PyiosoError
from pyioso import output
from pyioso.calib.qnet import ActQuant, QAdd, QAvgPool, QConv, QMaxPool, QNet
from pyioso.quant.granularity import INTEGER_GRANULARITIES

OPSET = 13          # per-channel DequantizeLinear (axis) is opset 13's
PRODUCER = "pyioso"


class _Graph:
    """Nodes and initializers of the ONNX graph being built, with fresh names."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers, self._count = [], [], 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, hint: str, array: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.name(hint)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _f32(t: torch.Tensor | float) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t, dtype=np.float32)


def _quantize(g: _Graph, x: str, act: ActQuant, hint: str) -> str:
    """act's activation, then its coding as Q/DQ (uint8) and a clip to its code range (none for a
    tensor kept float: --act-points reference)."""
    if act.activation == "relu":
        x = g.node("Relu", [x], f"{hint}_relu")
    elif act.activation == "relu6":
        x = g.node("Clip", [x, g.constant("zero", _f32(0.0)), g.constant("six", _f32(6.0))], f"{hint}_relu6")
    if act.kept_float:
        return x
    coding = act.coding()
    scale, zero = g.constant(f"{hint}_scale", _f32(coding.scale)), \
        g.constant(f"{hint}_zero_point", np.asarray(coding.zero_point, dtype=np.uint8))
    q = g.node("QuantizeLinear", [x, scale, zero], f"{hint}_q")
    y = g.node("DequantizeLinear", [q, scale, zero], f"{hint}_dq")
    lo, hi = act.bounds()
    if (lo, hi) != (0, 255):
        y = g.node("Clip", [y, g.constant("lo", _f32((lo - coding.zero_point) * coding.scale)),
                            g.constant("hi", _f32((hi - coding.zero_point) * coding.scale))], f"{hint}_clip")
    return y


def _conv(g: _Graph, net: QNet, node, module: QConv, x: str) -> str:
    hint = node.name.replace(".", "_")
    if module.levels == "kmeans" or module.fmt.granularity not in INTEGER_GRANULARITIES:
        raise PyiosoError(f"{node.name}: {module.levels} weights with {module.fmt.granularity} scales are not integer "
                          "codes times a scale per output channel, which a QDQ model's DequantizeLinear needs: "
                          "calibrate with uniform, ternary or binary weights and channel or tensor scales")
    codes = module.weight_codes().cpu().numpy()
    scale = module.w_scale.detach().double()
    bias = module.bias.detach().double()
    if module.oso:
        scale, bias = scale * module.oso_scale.detach().double(), \
            bias * module.oso_scale.detach().double() + module.oso_offset.detach().double()
    if module.symmetric:
        weight, zero = codes.astype(np.int8), np.zeros(codes.shape[0], dtype=np.int8)
    else:
        weight, zero = codes.astype(np.uint8), module.w_zero.detach().cpu().numpy().astype(np.uint8)
    w = g.node("DequantizeLinear", [g.constant(f"{hint}_weight", weight), g.constant(f"{hint}_w_scale", _f32(scale)),
                                    g.constant(f"{hint}_w_zero_point", zero)], f"{hint}_w_dq", axis=0)
    input_scale = net.input_scale(node)
    if input_scale is not None and input_scale.mode != "none":
        gamma = input_scale().detach().reshape(1, -1, 1, 1)
        w = g.node("Mul", [w, g.constant(f"{hint}_isg", _f32(gamma))], f"{hint}_w_isg")
    geometry = module.geometry
    y = g.node("Conv", [x, w, g.constant(f"{hint}_bias", _f32(bias))], hint,
               kernel_shape=list(codes.shape[2:]), strides=list(geometry["stride"]),
               pads=[*geometry["padding"], *geometry["padding"]], dilations=list(geometry["dilation"]),
               group=geometry["groups"])
    return _quantize(g, y, module.act, hint)


def graph(net: QNet, size: int, channels: int = 3):
    """The ONNX model (onnx.ModelProto) of a calibrated network with quantized activations."""
    from onnx import TensorProto, helper

    if not net.input_quant.enabled:
        raise PyiosoError("the network's activations are not quantized (weight-only calibration): "
                          "a QDQ model needs activation codings; calibrate with --abits 2..8")
    g = _Graph()
    values = {net.input_name: _quantize(g, "input", net.input_quant, "input")}
    for node in net.nodes:
        module, args = net.op(node), [values[t] for t in node.inputs]
        hint = node.name.replace(".", "_")
        if isinstance(module, QConv):
            values[node.output] = _conv(g, net, node, module, args[0])
        elif isinstance(module, QAdd):
            values[node.output] = _quantize(g, g.node("Add", args, hint), module.act, hint)
        elif isinstance(module, QAvgPool):
            pooled = g.node("AveragePool", args, hint, kernel_shape=list(module.kernel), strides=list(module.kernel))
            values[node.output] = _quantize(g, pooled, module.act, hint)
        elif isinstance(module, QMaxPool):
            p = module.pool
            values[node.output] = g.node("MaxPool", args, hint, kernel_shape=list(p.kernel), strides=list(p.stride),
                                         pads=[*p.padding, *p.padding])
        else:
            raise PyiosoError(f"{node.name}: no ONNX form for {type(module).__name__}")
    g.nodes.append(helper.make_node("Flatten", [values[net.output_name]], ["logits"], name="logits", axis=1))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, size, size])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", None])]
    model = helper.make_model(helper.make_graph(g.nodes, "pyioso_qdq", inputs, outputs, g.initializers),
                              opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER)
    model.ir_version = 8        # what onnxruntime of every supported version reads for opset 13
    return model


def save(net: QNet, path: str | Path, size: int, channels: int = 3) -> Path:
    """Write the QDQ model to `path` (checked by onnx's checker first; atomically)."""
    import onnx

    path = Path(path)
    if path.suffix != ".onnx":
        raise PyiosoError(f"--onnx {path}: give a file name ending in .onnx")
    model = graph(net, size, channels)
    onnx.checker.check_model(model, full_check=True)
    output.atomic_write(str(path), lambda f: f.write(model.SerializeToString()))
    return path


def run(path: str | Path, images: torch.Tensor, batch: int = 250) -> torch.Tensor:
    """Logits of the ONNX model under onnxruntime (CPU), in batches."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    outs = [session.run(["logits"], {"input": images[i:i + batch].numpy()})[0] for i in range(0, len(images), batch)]
    return torch.from_numpy(np.concatenate(outs))
