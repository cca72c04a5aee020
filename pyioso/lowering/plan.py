"""torch.fx lowering shared by the fake-quant (pyioso.calib.qnet) and integer
(pyioso.integer.rtn) builders: a traceable float network as the spec's ops (ARCHITECTURE §3, §5).

Every conv or linear absorbs the BN and ReLU/ReLU6 that follow it (§3), a residual add absorbs
its ReLU (§5), pools become golden's pool ops and flatten (of a 1x1 map) a no-op. The ops'
float tensors are recorded on calibration images, for the builders' observers. The network
input, the first layer's weights and the last layer's weights, input and logits take
EDGE_BITS; every other tensor the builder's bits.
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
from golden.spec import ACT_BITS, W_BITS
from pyioso.lowering import graph

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
class Op:
    """A graph op before calibration; `output` is the last node fused into it (bn, relu), the
    one whose float value its output coding is observed on."""

    kind: str                   # conv, fc, add, max_pool or avg_pool
    node: fx.Node
    inputs: tuple[fx.Node, ...]
    output: fx.Node
    tail: graph.Epilogue | None

    @property
    def name(self) -> str:
        """The module path, or the fx node name of a function (add_3)."""
        return self.node.target if self.node.op == "call_module" else self.node.name


@dataclass(frozen=True)
class Lowered:
    """A network as ops in execution order, with the float value of every tensor they read or
    write on the calibration images."""

    gm: fx.GraphModule
    ops: tuple[Op, ...]
    input: fx.Node
    last: Op                    # the Linear classifier whose output is the network's
    floats: dict[fx.Node, torch.Tensor]
    w_bits: int
    a_bits: int

    def act_bits(self, node: fx.Node) -> int:
        """Bits of a tensor's codes: EDGE_BITS for the input and the classifier's input and
        logits, a_bits for the rest."""
        return EDGE_BITS if node in (self.input, self.last.output, *self.last.inputs) else self.a_bits

    def edge(self, op: Op) -> bool:
        """The first or the last layer (EDGE_BITS, whatever the network's bits)."""
        return op is self.last or self.input in op.inputs

    def weight_bits(self, op: Op) -> int:
        """Bits of a layer's weights: EDGE_BITS for the first and the last layer."""
        return EDGE_BITS if self.edge(op) else self.w_bits

    def module(self, op: Op) -> nn.Module:
        return self.gm.get_submodule(op.node.target)

    def bn(self, op: Op) -> nn.Module | None:
        return self.gm.get_submodule(op.tail.bn) if op.tail.bn else None


def lower(model: nn.Module, images: torch.Tensor, w_bits: int, a_bits: int) -> Lowered:
    """Any traceable model (put in eval mode) made of the SUPPORTED ops and ending in a Linear
    classifier, with its tensors recorded on the float NCHW `images`."""
    check_bits(w_bits, "w_bits", W_BITS)
    check_bits(a_bits, "a_bits", ACT_BITS)
    gm = graph.trace(model.eval())
    ops, inp, out = _plan(gm)
    last = next((op for op in ops if op.output is out), None)
    if last is None or last.kind != "fc":
        raise PyiosoError(f"the network's output {out.name!r} is not a Linear classifier's: the "
                          "integer network's output is the logits of a final Linear layer")
    floats = _observe(gm, images, {inp, *(op.output for op in ops)})
    return Lowered(gm, tuple(ops), inp, last, floats, w_bits, a_bits)


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


def _plan(gm: fx.GraphModule) -> tuple[list[Op], fx.Node, fx.Node]:
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
        ops.append(Op(kind, node, inputs, chain[-1], tail))
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


def check_fc_input(name: str, x_float: torch.Tensor) -> None:
    """An FC reads a pooled vector: [N, C] or a 1x1 map [N, C, 1, 1] (§5)."""
    if not (x_float.dim() == 2 or (x_float.dim() == 4 and x_float.shape[2:] == (1, 1))):
        raise PyiosoError(f"{name} reads a {tuple(x_float.shape[1:])} tensor; the integer "
                          "network flattens only 1x1 maps (pool globally first)")


def pool_kernel(op: Op, values: dict) -> tuple[int, int]:
    """An average pool's kernel from its float input and output shapes (a global mean's output
    has no spatial dims)."""
    (h, w), out = values[op.inputs[0]].shape[2:], values[op.output].shape[2:]
    oh, ow = tuple(out) if len(out) == 2 else (1, 1)
    if h % oh or w % ow:
        raise PyiosoError(f"{op.node.name} pools a {h}x{w} map to {oh}x{ow}: the integer average "
                          "pool needs the output size to divide the input size")
    return h // oh, w // ow


def max_pool(module: nn.MaxPool2d, bits: int) -> golden.MaxPool:
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    if module.ceil_mode or pair(module.dilation) != (1, 1):
        raise PyiosoError("max pool with ceil_mode or dilation is not supported: use floor mode "
                          "and dilation 1")
    return golden.MaxPool(pair(module.kernel_size), pair(module.stride or module.kernel_size),
                   pair(module.padding), bits)
