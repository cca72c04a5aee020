"""A whole torchvision network as integer layers (ARCHITECTURE §1-§5), run by golden alone.

The float network is traced with torch.fx. Every conv or linear absorbs the BN and ReLU/ReLU6
that follow it (§3), a residual add absorbs its ReLU (§5), pools become golden's pool ops and
flatten (of a 1x1 map) a no-op. Activation codings are calibrated on the float network's own
tensors (MSE observer, one (s, z) per tensor), weights per output channel, and every dense conv
gets the fixed hardware ISG split of pyioso.layer_case. The result is what the engine would run
layer by layer, so each layer's golden input and output can be replayed on the RTL.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

import golden
from golden.errors import PyiosoError
from golden.layers import check_bits
from golden.spec import ACT_BITS, ISG_SHIFT, W_BITS
from pyioso import graph, tv
from pyioso.data import sample_photos
from pyioso.fixedpoint import add_requant, avg_pool_requant, integer_conv
from pyioso.layer_quant import Coding, encode, float_conv, observe_coding

EDGE_BITS = 8   # network input, first layer's weights, last layer's weights, input and logits

_MODULES = {nn.Conv2d: "conv", nn.Linear: "fc", nn.MaxPool2d: "max_pool",
            nn.AdaptiveAvgPool2d: "avg_pool", nn.Dropout: "pass", nn.Identity: "pass",
            nn.Flatten: "pass"}
_FUNCTIONS = {operator.add: "add", operator.iadd: "add", torch.add: "add",
              torch.flatten: "pass", F.adaptive_avg_pool2d: "avg_pool"}
SUPPORTED = ("Conv2d and Linear (each with the BatchNorm and ReLU/ReLU6 after it), residual add "
             "(with the ReLU after it), MaxPool2d, AdaptiveAvgPool2d/adaptive_avg_pool2d and the "
             "global mean x.mean([2, 3]), flatten of a 1x1 map, Dropout and Identity (no-ops in "
             "eval)")


@dataclass(frozen=True)
class MaxPool:
    """§5 max pool; golden has no descriptor for it because it has no tables."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    bits: int


@dataclass(frozen=True)
class Step:
    """One integer op: golden runs `op` on the tensors named `inputs` and names the result `output`."""

    name: str                   # module path, or the fx node name of a function (add_3)
    op: golden.Conv | golden.Add | golden.AvgPool | MaxPool
    inputs: tuple[str, ...]
    output: str


@dataclass(frozen=True)
class LayerRun:
    """A conv/FC layer's golden input and output codes, NHWC (an FC's as [N, 1, 1, C])."""

    path: str
    layer: golden.Conv
    x: torch.Tensor
    y: torch.Tensor


_RUN = {
    golden.Conv: lambda op, x: golden.conv(x, op),      # an FC is a 1x1 conv on a 1x1 map (§5)
    golden.Add: lambda op, a, b: golden.residual_add(a, b, op),
    golden.AvgPool: lambda op, x: golden.avg_pool(x, op),
    MaxPool: lambda op, x: golden.max_pool(x, op.kernel, op.stride, op.padding, op.bits),
}


@dataclass(frozen=True)
class IntNet:
    """golden ops in execution order over named code tensors: the whole network in integers."""

    steps: tuple[Step, ...]
    codings: dict[str, Coding]  # every tensor a step reads or writes, by name
    input_name: str
    output_name: str

    def quantize_input(self, images: torch.Tensor) -> torch.Tensor:
        """Float NCHW images -> the network's NHWC input codes."""
        return encode(images, self.codings[self.input_name])

    def forward(self, x: torch.Tensor, record: bool = False) -> tuple[torch.Tensor, list[LayerRun]]:
        """Logit codes [N, classes] for NHWC input codes, and with `record` every conv/FC
        layer's input and output codes in execution order (else an empty list)."""
        values, runs = {self.input_name: x}, []
        for step in self.steps:
            args = [values[name] for name in step.inputs]
            values[step.output] = _RUN[type(step.op)](step.op, *args)
            if record and isinstance(step.op, golden.Conv):
                runs.append(LayerRun(step.name, step.op, args[0], values[step.output]))
        return values[self.output_name][:, 0, 0, :], runs

    def dequantize_logits(self, codes: torch.Tensor) -> torch.Tensor:
        c = self.codings[self.output_name]
        return c.scale * (codes.to(torch.float64) - c.zero_point)


@dataclass(frozen=True)
class _Op:
    """A graph op before calibration; `output` is the last node fused into it (bn, relu), the
    one whose float value its output coding is observed on."""

    kind: str
    node: fx.Node
    inputs: tuple[fx.Node, ...]
    output: fx.Node
    tail: graph.Epilogue | None


def build(net: str, size: int = 224, w_bits: int = 4, a_bits: int = 4, seed: int = 0,
          images: int = 4, isg_shift: int = ISG_SHIFT) -> IntNet:
    """The seeded network `net` calibrated on `images` Fashion-MNIST photos of size x size."""
    model = tv.build_model(net, seed=seed)
    return from_model(model, sample_photos(images, size, seed), w_bits, a_bits, isg_shift)


def from_model(model: nn.Module, images: torch.Tensor, w_bits: int = 4, a_bits: int = 4,
               isg_shift: int = ISG_SHIFT) -> IntNet:
    """Any traceable model (put in eval mode) made of the SUPPORTED ops, ending in a Linear
    classifier, calibrated on the float NCHW `images`."""
    check_bits(w_bits, "w_bits", W_BITS)
    check_bits(a_bits, "a_bits", ACT_BITS)
    gm = graph.trace(model.eval())
    ops, inp, out = _plan(gm)
    last = next((op for op in ops if op.output is out), None)
    if last is None or last.kind != "fc":
        raise PyiosoError(f"the network's output {out.name!r} is not a Linear classifier's: the "
                          "integer network's output is the logits of a final Linear layer")
    edge = {inp, last.output, *last.inputs}
    float_values = _observe(gm, images, {inp, *(op.output for op in ops)})
    codings = {inp: observe_coding(float_values[inp], EDGE_BITS)}
    for op in ops:      # §5: a max pool's output keeps its input's coding
        codings[op.output] = codings[op.inputs[0]] if op.kind == "max_pool" else observe_coding(
            float_values[op.output], EDGE_BITS if op.output in edge else a_bits)
    steps = []
    for op in ops:
        wb = EDGE_BITS if op is last or inp in op.inputs else w_bits
        steps.append(Step(op.node.target if op.node.op == "call_module" else op.node.name,
                          _golden_op(gm, op, codings, float_values, wb, isg_shift),
                          tuple(n.name for n in op.inputs), op.output.name))
    return IntNet(tuple(steps), {n.name: c for n, c in codings.items()}, inp.name, out.name)


def _kind(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        kind = next((k for t, k in _MODULES.items() if isinstance(module, t)), None)
        what = f"module {node.target!r} ({type(module).__name__})"
    elif node.op == "call_function":
        kind = _FUNCTIONS.get(node.target)
        what = f"function {getattr(node.target, '__name__', node.target)} (node {node.name})"
    elif node.op == "call_method":
        kind = _method_kind(node)
        what = f"method .{node.target}() (node {node.name})"
    else:
        kind, what = None, f"{node.op} {node.target!r}"
    if kind is None:
        raise PyiosoError(f"the integer network cannot run {what}; supported: {SUPPORTED}")
    return kind


def _method_kind(node: fx.Node) -> str | None:
    """Tensor methods torchvision models use: x.flatten(1) and the global mean x.mean([2, 3])."""
    if node.target == "flatten":
        return "pass"
    if node.target == "mean":
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if sorted(int(d) % 4 for d in (dims if isinstance(dims, (list, tuple)) else [dims])) == [2, 3] \
                and not node.kwargs.get("keepdim", False):
            return "avg_pool"
    return None


def _plan(gm: fx.GraphModule):
    """The ops in execution order, with fused nodes folded in and no-ops resolved to their source."""
    ops, source, fused, inp, out = [], {}, set(), None, None
    for node in gm.graph.nodes:
        if node in fused:
            continue
        if node.op == "placeholder":
            if inp is not None:
                raise PyiosoError("the network takes more than one input; pyioso runs one image tensor")
            inp = source[node] = node
            continue
        if node.op == "output":
            if not isinstance(node.args[0], fx.Node):
                raise PyiosoError("the network returns several tensors; pyioso runs classifiers "
                                  "that return one logits tensor")
            out = source[node.args[0]]
            continue
        kind = _kind(gm, node)
        if kind == "pass":
            source[node] = source[node.args[0]]
            continue
        chain, tail = [node], None
        if kind in ("conv", "fc"):
            if any(op.node.target == node.target for op in ops):
                raise PyiosoError(f"module {node.target!r} is called more than once; the integer "
                                  "network gives every conv/linear call its own layer")
            tail = graph.epilogue(gm, node.target)
            for _ in range((tail.bn is not None) + (tail.activation != "none")):
                chain.append(next(iter(chain[-1].users)))
        elif kind == "add":
            after = graph.only_user(node)
            if graph.activation_of(gm, after) == "relu":
                chain.append(after)
        inputs = tuple(source[a] for a in node.args if isinstance(a, fx.Node))
        if kind == "add" and (len(inputs) != 2 or len(node.args) != 2 or node.kwargs):
            raise PyiosoError(f"{node.name} is not a sum of two tensors; the integer network "
                              "runs residual adds x1 + x2 only")
        fused.update(chain)
        source.update((n, chain[-1]) for n in chain)
        ops.append(_Op(kind, node, inputs, chain[-1], tail))
    return ops, inp, out


class _Recorder(fx.Interpreter):
    """Runs the float graph keeping copies of the chosen nodes' values (copies: the in-place
    ReLUs of torchvision rewrite tensors later in the forward)."""

    def __init__(self, gm: fx.GraphModule, keep: set[fx.Node]):
        super().__init__(gm)
        self.keep, self.values = keep, {}

    def run_node(self, n: fx.Node):
        value = super().run_node(n)
        if n in self.keep:
            self.values[n] = value.detach().clone()
        return value


def _observe(gm: fx.GraphModule, images: torch.Tensor, keep: set[fx.Node]) -> dict:
    recorder = _Recorder(gm, keep)
    with torch.no_grad():
        recorder.run(images)
    return recorder.values


def _golden_op(gm, op: _Op, codings: dict, values: dict, w_bits: int, isg_shift: int):
    x, y = codings[op.inputs[0]], codings[op.output]
    if op.kind in ("conv", "fc"):
        return _conv(gm, op, x, y, values[op.inputs[0]], w_bits, isg_shift)
    if op.kind == "add":
        x2 = codings[op.inputs[1]]
        return add_requant((x.scale, x2.scale), (x.zero_point, x2.zero_point), (x.bits, x2.bits),
                           y.scale, y.zero_point, y.bits, relu=op.output is not op.node)
    if op.kind == "max_pool":
        return _max_pool(gm.get_submodule(op.node.target), x.bits)
    kernel = pool_kernel(op, values)
    return avg_pool_requant(kernel, kernel, (0, 0), x.scale, x.zero_point, x.bits,
                            y.scale, y.zero_point, y.bits)


def check_fc_input(name: str, x_float: torch.Tensor) -> None:
    """An FC reads a pooled vector: [N, C] or a 1x1 map [N, C, 1, 1] (§5)."""
    if not (x_float.dim() == 2 or (x_float.dim() == 4 and x_float.shape[2:] == (1, 1))):
        raise PyiosoError(f"{name} reads a {tuple(x_float.shape[1:])} tensor; the integer "
                          "network flattens only 1x1 maps (pool globally first)")


def pool_kernel(op: _Op, values: dict) -> tuple[int, int]:
    """An average pool's kernel from its float input and output shapes (a global mean's output
    has no spatial dims)."""
    (h, w), out = values[op.inputs[0]].shape[2:], values[op.output].shape[2:]
    oh, ow = tuple(out) if len(out) == 2 else (1, 1)
    if h % oh or w % ow:
        raise PyiosoError(f"{op.node.name} pools a {h}x{w} map to {oh}x{ow}: the integer average "
                          "pool needs the output size to divide the input size")
    return h // oh, w // ow


def _max_pool(module: nn.MaxPool2d, bits: int) -> MaxPool:
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    if module.ceil_mode or pair(module.dilation) != (1, 1):
        raise PyiosoError("max pool with ceil_mode or dilation is not supported: use floor mode "
                          "and dilation 1")
    return MaxPool(pair(module.kernel_size), pair(module.stride or module.kernel_size),
                   pair(module.padding), bits)


def _conv(gm, op: _Op, x: Coding, y: Coding, x_float: torch.Tensor, w_bits: int,
          isg_shift: int) -> golden.Conv:
    """The conv or linear at op.node with its BN folded, as fixedpoint's integer layer (§3)."""
    if op.kind == "fc":
        check_fc_input(op.node.target, x_float)
    bn = gm.get_submodule(op.tail.bn) if op.tail.bn else None
    return integer_conv(float_conv(gm.get_submodule(op.node.target), bn, op.tail.activation, x, y,
                                   w_bits, isg_shift))
