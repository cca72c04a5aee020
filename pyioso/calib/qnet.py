"""The fake-quantized network the calibrator trains: the integer network's ops, in float.

Every op of the lowered network (pyioso.lowering.plan: conv/FC with BN folded and the
activation fused, residual add, pools) becomes a module that computes exactly what ARCHITECTURE §1-§5 compute, up to the
fixed-point rounding of the tables: weights as AdaRound or nearest codes times s_w, the ISG
input scales, OSO, and every tensor's coding with its clamp (so a block's last conv is
requantized before the residual add, as the hardware does). Quantization of weights and of
activations is switched per op, which is how the reconstruction stages run the float model, the
weight-quantized one and the fully quantized one from one set of modules.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import fx, nn

import golden
from golden.errors import PyiosoError
from golden.layers import check_bits
from golden.spec import ACT_BITS, ISG_SHIFT, W_BITS
from pyioso.calib.isg import InputScale
from pyioso.lowering.plan import EDGE_BITS, Lowered, Op, check_fc_input, lower, max_pool, pool_kernel
from pyioso.quant import lsq
from pyioso.quant.bn import fold_conv_bn, fold_linear_bn
from pyioso.quant.granularity import ELEMENT_GRANULARITIES, element_scales
from pyioso.quant.layer import Coding, observe_coding, qparams
from pyioso.quant.levels import fixed_rounding
from pyioso.quant.rounding import AdaRound, NearestRounding, StochasticRounding

_FLOAT_ACTIVATIONS = {"none": lambda x: x, "relu": F.relu, "relu6": F.relu6}


class ActQuant(nn.Module):
    """One tensor's coding (s, z, bits) and the clamp of the activation that produced it.

    Enabled: code = clamp(round(x / s) + z, lo, hi), value = s (code - z), with the clipped STE for
    x and the LSQ gradient for s (trained with Adam, which makes LSQ's gradient scale moot), in
    one fused pass each way (:mod:`pyioso.quant.lsq`).
    Disabled: the float activation. With `drop` > 0 in training, each element keeps its float
    value with that probability (QDrop). A `kept_float` tensor is never quantized: an ablation
    of the quantization points (QUANT_POINTS), not something the engine can run.
    """

    def __init__(self, coding: Coding, activation: str, kept_float: bool = False):
        super().__init__()
        self.bits, self.zero_point, self.activation = coding.bits, coding.zero_point, activation
        self.scale = nn.Parameter(torch.tensor(coding.scale, dtype=torch.float32),
                                  requires_grad=False)
        self.enabled, self.drop, self.generator = False, 0.0, None
        self.kept_float = kept_float

    def coding(self) -> Coding:
        return Coding(float(self.scale), self.zero_point, self.bits)

    def set_coding(self, coding: Coding) -> None:
        self.bits, self.zero_point = coding.bits, coding.zero_point
        self.scale.data.fill_(coding.scale)

    def bounds(self) -> tuple[int, int]:
        return golden.activation_bounds(self.activation, self.bits, self.zero_point,
                                        float(self.scale.detach()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled or self.kept_float:
            return _FLOAT_ACTIVATIONS[self.activation](x)
        lo, hi = self.bounds()
        s = self.scale.clamp_min(torch.finfo(self.scale.dtype).eps)
        return lsq.fake_quantize(x, s, lo - self.zero_point, hi - self.zero_point, self.activation,
                                 self.drop if self.training else 0.0, self.generator)


@dataclass(frozen=True)
class WeightFormat:
    """How a layer's weights are quantized, beyond their bits (the calibration's weight settings)."""

    observer: str = "mse"           # the clipping range per channel (pyioso.quant.observers.OBSERVERS)
    symmetric: bool = True          # False: an unsigned grid with a zero point per channel
    levels: str = "uniform"         # uniform, or fixed codes (pyioso.quant.levels.LEVELS)
    granularity: str = "channel"    # how scales are shared (pyioso.quant.granularity.GRANULARITIES)
    stochastic: bool = False        # stochastic instead of nearest rounding where none is learned
    seed: int = 0                   # of the stochastic rounding


class QConv(nn.Module):
    """Conv or FC (a 1x1 conv on a 1x1 map, §5) with BN folded: weight rounding, ISG input scale
    (given by the network: it belongs to the input's tensor class), OSO and the output coding."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, geometry: dict, w_bits: int,
                 act: ActQuant, activation: str, fmt: WeightFormat = WeightFormat()):
        super().__init__()
        self.geometry, self.w_bits, self.activation, self.fmt = geometry, w_bits, activation, fmt
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        fixed = None        # ternary, binary or k-means: the rule gives codes and scale at once
        if fmt.levels != "uniform":
            fixed, scale = fixed_rounding(fmt.levels, weight, w_bits)
            zero = 0
        else:
            scale, zero = qparams(weight, w_bits, signed=fmt.symmetric, observer=fmt.observer,
                                  ch_axis=None if fmt.granularity == "tensor" else 0)
        channels = weight.shape[0]
        self.register_buffer("w_scale", torch.as_tensor(scale, dtype=weight.dtype).expand(channels).clone())
        # derived from the weight like the scale; not saved, so older checkpoints load as before
        self.register_buffer("w_zero", torch.as_tensor(zero, dtype=weight.dtype).expand(channels).clone(),
                             persistent=False)
        if fmt.granularity in ELEMENT_GRANULARITIES:
            self.register_buffer("w_element_scale", element_scales(weight, w_bits, fmt.granularity, self.w_scale),
                                 persistent=False)
        self.rounding: NearestRounding | AdaRound = fixed if fixed is not None else self._nearest()
        self.oso_scale = nn.Parameter(torch.ones(channels), requires_grad=False)
        self.oso_offset = nn.Parameter(torch.zeros(channels), requires_grad=False)
        self.quant_weights, self.oso = False, False
        self.beta, self.penalty = 0.0, None
        self.taps = None        # the kernel taps the last input reached (forward)
        self.act = act

    @property
    def symmetric(self) -> bool:
        return self.fmt.symmetric

    @property
    def levels(self) -> str:
        return self.fmt.levels

    @property
    def dense(self) -> bool:
        return self.geometry["groups"] == 1

    @property
    def depthwise(self) -> bool:
        """Channelwise (C_out = groups, one input channel each): it carries the channel order."""
        return not self.dense and self.weight.shape[1] == 1 and self.geometry["groups"] == self.weight.shape[0]

    @property
    def learns_rounding(self) -> bool:
        """AdaRound applies: the uniform grid (ternary and binary codes are the method's own)."""
        return self.levels == "uniform"

    def _grid(self) -> tuple:
        """(weight, scale, zero point, bits, signed, ch_axis) of the rounding: a scale per output
        channel, or per weight (vector and MX granularity)."""
        if hasattr(self, "w_element_scale"):
            return self.weight, self.w_element_scale, 0.0, self.w_bits, True, None
        return self.weight, self.w_scale, self.w_zero, self.w_bits, self.symmetric, 0

    def _nearest(self) -> NearestRounding:
        """The rounding before (or instead of) AdaRound: the levels' own rule, stochastic or nearest."""
        if not self.learns_rounding:
            return fixed_rounding(self.levels, self.weight, self.w_bits)[0]
        if self.fmt.stochastic:
            return StochasticRounding(*self._grid(), seed=self.fmt.seed)
        return NearestRounding(*self._grid())

    def use_adaround(self) -> AdaRound:
        self.rounding = AdaRound(*self._grid())
        return self.rounding

    def _quantized_weight(self, taps: tuple[slice, slice]) -> torch.Tensor:
        """The weight of kernel taps `taps` the layer computes with; while AdaRound is soft
        (reconstruction), the regularizer at `beta` comes out of the same pass and waits in
        `penalty`."""
        r = self.rounding
        if isinstance(r, AdaRound) and r.soft:
            w, self.penalty = r.soft_weight(self.beta, taps)
            return w
        return r()[:, :, taps[0], taps[1]]

    def weight_codes(self) -> torch.Tensor:
        return self.rounding.codes().detach().to(torch.int64)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor | None = None) -> torch.Tensor:
        # the taps the input reaches, kept for a reconstruction to learn only those (AdaRound.focus)
        self.taps, geometry = tap_crop(self.weight.shape[-2:], x.shape[-2:], self.geometry)
        w = self._quantized_weight(self.taps) if self.quant_weights else self.weight[:, :, self.taps[0], self.taps[1]]
        if gamma is not None:
            w = w * gamma[None, :, None, None]
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            w = w.contiguous(memory_format=torch.channels_last)   # both NHWC: fastest CPU conv
        y = F.conv2d(x, w, self.bias, **geometry)
        if self.oso and self.quant_weights:
            y = y * self.oso_scale[None, :, None, None] + self.oso_offset[None, :, None, None]
        return self.act(y)


def tap_crop(kernel, size, geometry: dict) -> tuple[tuple[slice, slice], dict]:
    """The kernel taps (rows, columns) that ever see an input of `size`, not only padding, and
    the conv's geometry restricted to them.

    On the small maps of a low-resolution network (a 3x3 conv, padding 1, on a 1x1 map: only the
    centre tap) the other taps multiply zeros; dropping them gives the same output and the same
    gradient (zero) for those taps, at a fraction of the cost. All taps where the cropped conv
    would need asymmetric padding.
    """
    every = (slice(0, kernel[0]), slice(0, kernel[1]))
    crops, padding = [], []
    for axis, length in enumerate(size):
        k, s = kernel[axis], geometry["stride"][axis]
        p, d = geometry["padding"][axis], geometry["dilation"][axis]
        out = (length + 2 * p - d * (k - 1) - 1) // s + 1
        live = [i for i in range(k) if any(0 <= o * s - p + i * d < length for o in range(out))]
        if not live:
            return every, geometry
        lo, hi = live[0], live[-1]
        new_p = p - lo * d
        if new_p < 0 or (length + 2 * new_p - d * (hi - lo) - 1) // s + 1 != out:
            return every, geometry
        crops.append(slice(lo, hi + 1))
        padding.append(new_p)
    if tuple(crops) == every:
        return every, geometry
    return tuple(crops), {**geometry, "padding": tuple(padding)}


class QAdd(nn.Module):
    def __init__(self, act: ActQuant):
        super().__init__()
        self.act = act

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.act(a + b)


class QAvgPool(nn.Module):
    def __init__(self, kernel: tuple[int, int], act: ActQuant):
        super().__init__()
        self.kernel, self.act = kernel, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(F.avg_pool2d(x, self.kernel))


class QMaxPool(nn.Module):
    """§5: the output keeps the input's coding, so max of values = value of the max code."""

    def __init__(self, pool: golden.MaxPool):
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, self.pool.kernel, self.pool.stride, self.pool.padding)


@dataclass(frozen=True)
class Node:
    """One op: `key` names its module in QNet.ops; tensors are named by fx node names."""

    name: str           # module path (conv) or fx node name (add_3): the integer step's name
    key: str
    kind: str           # conv, fc, add, avg_pool, max_pool
    inputs: tuple[str, ...]
    output: str
    scope: tuple[tuple[str, str], ...] = ()    # enclosing modules (path, type), outermost first


class QNet(nn.Module):
    """Ops in execution order over named tensors, NCHW floats (an FC's as [N, C, 1, 1])."""

    def __init__(self, nodes: list[Node], ops: dict[str, nn.Module], input_name: str,
                 input_quant: ActQuant, classes: dict[str, int], class_channels: dict[int, int],
                 permutable: set[int], isg_shift: int):
        super().__init__()
        self.nodes, self.input_name, self.isg_shift = tuple(nodes), input_name, isg_shift
        self.ops = nn.ModuleDict(ops)
        self.input_quant = input_quant
        self.class_of = classes                 # tensor name -> class id
        self.permutable = frozenset(permutable)
        self.input_scales = nn.ModuleDict({str(c): InputScale(n, isg_shift)
                                           for c, n in class_channels.items()})

    @property
    def output_name(self) -> str:
        return self.nodes[-1].output

    def op(self, node: Node) -> nn.Module:
        return self.ops[node.key]

    def input_scale(self, node: Node) -> InputScale | None:
        """The ISG scale of a dense conv/FC: its input class's (grouped convs take none, §2)."""
        if node.kind not in ("conv", "fc") or not self.op(node).dense:
            return None
        return self.input_scales[str(self.class_of[node.inputs[0]])]

    def coding(self, tensor: str) -> ActQuant:
        """The quantizer that defines a tensor's coding (a max pool's output keeps its input's)."""
        if tensor == self.input_name:
            return self.input_quant
        node = next(n for n in self.nodes if n.output == tensor)
        return self.coding(node.inputs[0]) if node.kind == "max_pool" else self.op(node).act

    def run(self, values: dict[str, torch.Tensor], nodes) -> dict[str, torch.Tensor]:
        """Run `nodes` (in order) on `values`; returns `values` with their outputs added."""
        for node in nodes:
            args = [values[t] for t in node.inputs]
            module = self.op(node)
            if node.kind in ("conv", "fc"):     # float layers take no ISG scale
                scale = self.input_scale(node) if module.quant_weights else None
                gamma = None if scale is None or scale.mode == "none" else scale()
                values[node.output] = module(args[0], gamma)
            else:
                values[node.output] = module(*args)
        return values

    def quantize_input(self, images: torch.Tensor) -> torch.Tensor:
        return self.input_quant(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [N, classes] (dequantized codes when quantization is on)."""
        values = self.run({self.input_name: self.quantize_input(images)}, self.nodes)
        return values[self.output_name].flatten(1)

    def set_quant(self, weights: bool, acts: bool, nodes=None) -> None:
        """Switch weight and activation quantization of `nodes` (default: all, and the input)."""
        if nodes is None:
            nodes, self.input_quant.enabled = self.nodes, acts
        for node in nodes:
            module = self.op(node)
            if isinstance(module, QConv):
                module.quant_weights = weights
            if hasattr(module, "act"):
                module.act.enabled = acts


def observe_quantized(net: QNet, images: torch.Tensor, observer: str) -> None:
    """Observe every activation coding again on `images`, in network order, on what reaches it with
    the weights (as they are) and every coding before it quantized: BRECQ's code initializes its
    activation steps so, after the weight stage. Leaves the activations unquantized, as the
    weight stage had them."""
    acts = [m for m in net.modules() if isinstance(m, ActQuant) and not m.kept_float]

    def observe(act: ActQuant, args: tuple) -> None:
        act.set_coding(observe_coding(_FLOAT_ACTIVATIONS[act.activation](args[0]), act.bits, observer))
    hooks = [act.register_forward_pre_hook(observe) for act in acts]
    training = net.training
    try:
        net.eval()
        net.set_quant(True, True)
        with torch.no_grad():
            net(images)
    finally:
        for hook in hooks:
            hook.remove()
        net.set_quant(True, False)
        net.train(training)


# Which tensors carry a coding. "engine": every tensor the integer engine stores (the default,
# and the only exportable one). "brecq" and "qdrop": only those the method's own code quantizes on
# a ResNet (yhhhli/BRECQ quant_model.py, wimh966/QDrop main_imagenet.py quantize_model): not the
# input image, not the convs read only by a residual add, not the classifier's input and output; BRECQ
# keeps the stem's output at 8 bits, QDrop the last block's output.
QUANT_POINTS = ("engine", "brecq", "qdrop")


def build(model: nn.Module, images: torch.Tensor, w_bits: int, a_bits: int,
          isg_shift: int = ISG_SHIFT, observer: str = "mse", weights: WeightFormat = WeightFormat(),
          points: str = "engine", layer_bits: dict[str, int] | None = None,
          tensor_bits: dict[str, int] | None = None) -> QNet:
    """The fake-quant network of a traceable float `model` (eval mode) made of the lowering's
    SUPPORTED ops, with every coding initialized by `observer` (pyioso.quant.observers.OBSERVERS)
    on the float tensors of `images`, the quantization `points` of QUANT_POINTS, and the middle
    layers' weights in the format `weights` at w_bits or their `layer_bits` (mixed precision; the
    8-bit first and last layers: uniform levels, per-channel scales; each layer's stochastic
    rounding seeded apart), and the middle tensors at a_bits or their `tensor_bits` (by the op
    writing them)."""
    low = lower(model, images, w_bits, a_bits)
    layer_bits = _check_layer_bits(low, layer_bits or {})
    kept_float, act_bits = _points(low, points)
    act_bits.update(_check_tensor_bits(low, tensor_bits or {}))
    bits_of = lambda node: act_bits.get(node, low.act_bits(node))   # noqa: E731

    def act(node: fx.Node, activation: str) -> ActQuant:
        coding = observe_coding(low.floats[node], bits_of(node), observer)
        return ActQuant(coding, activation, node in kept_float)

    nodes, ops = [], {}
    for op in low.ops:
        key = f"op{len(nodes)}"
        if op.kind in ("conv", "fc"):
            edge = low.edge(op)
            fmt = replace(weights, levels="uniform", granularity="channel") if edge else weights
            bits = low.weight_bits(op) if edge else layer_bits.get(op.name, w_bits)
            ops[key] = _conv(low, op, bits, act(op.output, op.tail.activation),
                             replace(fmt, seed=fmt.seed * 10007 + len(nodes)))
        elif op.kind == "add":
            ops[key] = QAdd(act(op.output, "relu" if op.output is not op.node else "none"))
        elif op.kind == "max_pool":
            ops[key] = QMaxPool(max_pool(low.module(op), bits_of(op.inputs[0])))
        else:
            ops[key] = QAvgPool(pool_kernel(op, low.floats), act(op.output, "none"))
        nodes.append(Node(op.name, key, op.kind, tuple(n.name for n in op.inputs), op.output.name,
                          _scope(op.node)))
    widths = {n.name: v.shape[1] for n, v in low.floats.items()}
    classes, channels, permutable = _tensor_classes(nodes, ops, low.input.name, widths)
    return QNet(nodes, ops, low.input.name, act(low.input, "none"), classes, channels,
                permutable, isg_shift)


def _check_layer_bits(low: Lowered, layer_bits: dict[str, int]) -> dict[str, int]:
    """Per-layer weight bits, refused for a layer the network lacks, an 8-bit edge layer or bits
    outside the integer datapath's."""
    middle = {op.name for op in low.ops if op.kind in ("conv", "fc") and not low.edge(op)}
    for name, bits in layer_bits.items():
        if name not in middle:
            raise PyiosoError(f"layer bits for {name!r}: not a conv/FC between the network's first and last "
                              f"layers (those stay {EDGE_BITS}-bit); the layers are {', '.join(sorted(middle))}")
        check_bits(bits, f"bits of {name}", W_BITS)
    return layer_bits


def _middle_tensors(low: Lowered) -> dict[str, fx.Node]:
    """{op name: its output} of the tensors whose activation bits a network may choose per tensor:
    every op's output but the classifier's input and logits (8-bit edges). A max pool passes its
    input's codes on, so its output is its input's tensor, not one of these."""
    return {op.name: op.output for op in low.ops
            if op.kind != "max_pool" and op.output not in (low.last.output, *low.last.inputs)}


def _check_tensor_bits(low: Lowered, tensor_bits: dict[str, int]) -> dict[fx.Node, int]:
    """Per-tensor activation bits by the op writing the tensor, refused for an op the network lacks,
    an 8-bit edge or bits outside the integer datapath's."""
    middle = _middle_tensors(low)
    for name, bits in tensor_bits.items():
        if name not in middle:
            raise PyiosoError(f"activation bits for {name!r}: not an op writing a middle tensor (the "
                              f"classifier's input and logits stay {EDGE_BITS}-bit); the ops are "
                              f"{', '.join(sorted(middle))}")
        check_bits(bits, f"activation bits of {name}", ACT_BITS)
    return {middle[name]: bits for name, bits in tensor_bits.items()}


def _points(low: Lowered, points: str) -> tuple[set[fx.Node], dict[fx.Node, int]]:
    """(tensors kept float, tensors with other bits than low.act_bits) of QUANT_POINTS[points]."""
    if points not in QUANT_POINTS:
        raise PyiosoError(f"quantization points {points!r} are unknown: use one of {', '.join(QUANT_POINTS)}")
    if points == "engine":
        return set(), {}
    producer, readers = {op.output: op for op in low.ops}, {}
    for op in low.ops:
        for t in op.inputs:
            readers.setdefault(t, []).append(op.kind)
    pre_add = {t for t, kinds in readers.items()        # a conv read only by adds: BRECQ's conv2, downsample
               if set(kinds) == {"add"} and t in producer and producer[t].kind in ("conv", "fc")}
    kept_float = {low.input, low.last.output, *low.last.inputs, *pre_add}
    if points == "brecq":
        stems = [op.output for op in low.ops if low.input in op.inputs]
        return kept_float, dict.fromkeys(stems, EDGE_BITS)
    pooled = [producer[t] for t in low.last.inputs if t in producer]
    return kept_float, {t: EDGE_BITS for op in pooled if op.kind == "avg_pool" for t in op.inputs}


def _scope(node: fx.Node) -> tuple[tuple[str, str], ...]:
    """(path, type name) of the modules an fx node runs inside, outermost first."""
    return tuple((path, cls.__name__) for path, cls in node.meta.get("nn_module_stack", {}).values())


def _conv(low: Lowered, op: Op, bits: int, act: ActQuant, fmt: WeightFormat) -> QConv:
    module, bn, x_float = low.module(op), low.bn(op), low.floats[op.inputs[0]]
    if op.kind == "fc":
        check_fc_input(op.node.target, x_float)
        weight, bias = fold_linear_bn(module, bn) if bn else (module.weight, module.bias)
        weight, geometry = weight[:, :, None, None], dict(stride=(1, 1), padding=(0, 0),
                                                          dilation=(1, 1), groups=1)
    else:
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            raise PyiosoError(f"{op.node.target} is padded with {module.padding!r}/"
                              f"{module.padding_mode}: the integer conv takes explicit zero padding")
        weight, bias = fold_conv_bn(module, bn) if bn else (module.weight, module.bias)
        weight = without_dead_channels(weight, x_float, module.groups)
        geometry = dict(stride=tuple(module.stride), padding=tuple(module.padding),
                        dilation=tuple(module.dilation), groups=module.groups)
    bias = torch.zeros(weight.shape[0]) if bias is None else bias
    return QConv(weight.detach().float().contiguous(), bias.detach().float(), geometry, bits,
                 act, op.tail.activation, fmt)


def without_dead_channels(weight: torch.Tensor, x: torch.Tensor, groups: int) -> torch.Tensor:
    """The weight with zeros for the output channels whose inputs are all 0 on every image of x.

    Such a channel outputs its bias there whatever its weights, but BN folding scales them by
    gamma / sigma with sigma ~ 0 (the BN saw a constant): a depthwise channel behind a dead ReLU
    channel got an alpha' 18,000x the layer's median in mnasnet1_0, which through the layer's one
    shift F (ARCHITECTURE §3) took the live channels' precision and exceeded §3's limit. With
    zero weights the layer computes the same on these images and exports exactly (S_c = 0).
    """
    live_in = x.detach().abs().amax(dim=(0, 2, 3)) > 0
    live_out = live_in.view(groups, -1).any(1).repeat_interleave(weight.shape[0] // groups)
    return weight * live_out.to(weight.dtype)[:, None, None, None]


def _tensor_classes(nodes: list[Node], ops: dict, input_name: str, widths: dict[str, int]):
    """Tensor classes (ARCHITECTURE §4): tensors joined by channelwise ops share one channel
    order. A class is permutable when every producer in it is a dense conv/FC or carries the
    order (pools, add, depthwise conv); the network input and grouped convs pin the order
    (their inputs and outputs cannot be reordered without mixing their groups)."""
    parent = {}

    def find(t):
        while parent.setdefault(t, t) != t:
            t = parent[t]
        return t

    pinned = {input_name}
    for node in nodes:
        module = ops[node.key]
        if node.kind in ("add", "avg_pool", "max_pool") or (isinstance(module, QConv) and module.depthwise):
            for t in node.inputs:
                parent[find(t)] = find(node.output)
        elif isinstance(module, QConv) and not module.dense:
            pinned.update((node.inputs[0], node.output))
        find(node.output)
    ids = {}
    classes = {t: ids.setdefault(find(t), len(ids)) for t in [input_name, *(n.output for n in nodes)]}
    channels = {c: widths[t] for t, c in reversed(classes.items())}
    permutable = set(channels) - {classes[t] for t in pinned}
    return classes, channels, permutable
