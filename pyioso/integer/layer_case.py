"""A named layer of a seeded torchvision network as an integer test case.

The float network (seeded weights) runs on real Fashion-MNIST photos up to the layer; the layer
is quantized by pyioso/quant/layer.py (BN folded, MSE observer, a valid hardware ISG split) and
fixedpoint turns it into the integer layer golden runs. The same case feeds the
golden main job here and the RTL testbenches later.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import golden
from golden.errors import PyiosoError
from golden.meaning import FloatConv
from golden.spec import ISG_SHIFT, PAPER_GROUP_CODES
from pyioso.data.datasets import sample_photos
from pyioso.lowering import graph
from pyioso.models import tv, zoo
from pyioso.quant.fixedpoint import integer_conv
from pyioso.quant.layer import encode, float_conv, hw_group_sizes, observe_coding


@dataclass(frozen=True)
class LayerCase:
    name: str
    net: str
    info: zoo.LayerInfo
    x: torch.Tensor             # input codes, NHWC
    float_layer: FloatConv
    layer: golden.Conv
    real_output: torch.Tensor   # the unquantized float layer's output (after its activation), NHWC
    group_sizes: tuple[int, ...]


def random_case(h: int, w: int, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                w_bits: int = 4, a_bits: int = 4, seed: int = 0, isg_shift: int = ISG_SHIFT,
                groups: int = 1):
    """(input codes, integer layer) of any conv shape: seeded codes, scales, BN-like bias, ReLU
    and a valid hardware ISG split (none for a depthwise conv, §2); for testing the engine on
    shapes no network has."""
    gen = torch.Generator().manual_seed(seed)
    unit = lambda n: torch.rand(n, generator=gen, dtype=torch.float64)  # noqa: E731
    k, c_in_g = (kernel, kernel), c_in // groups
    depthwise = groups > 1 and groups == c_in == c_out
    codes = (torch.zeros(c_in, dtype=torch.int64) if depthwise else
             golden.channel_codes(hw_group_sizes(c_in), PAPER_GROUP_CODES)) if isg_shift else None
    fc = FloatConv(
        weight=torch.randint(-2 ** (w_bits - 1), 2 ** (w_bits - 1), (c_out, *k, c_in_g), generator=gen),
        w_scale=(0.5 + unit(c_out)) / (2 ** (w_bits - 1) * (kernel * kernel * c_in_g) ** 0.5), w_bits=w_bits,
        in_scale=1.0 / 2 ** a_bits, in_zero_point=int(torch.randint(0, 2 ** a_bits, (1,), generator=gen)),
        in_bits=a_bits, out_scale=0.4 / 2 ** a_bits, out_zero_point=0, out_bits=a_bits,
        bias=unit(c_out) - 0.3, isg_shift=isg_shift, isg_codes=codes, activation="relu",
        stride=(stride, stride), padding=(padding, padding), groups=groups)
    x = torch.randint(0, 2 ** a_bits, (1, h, w, c_in), generator=gen)
    return x, integer_conv(fc)


def _capture(model: torch.nn.Module, path: str, images: torch.Tensor):
    """Input of the module at `path` and the output of its BN (before the activation).

    Hooks clone (torchvision's in-place activations rewrite these tensors later in the forward)
    and return None (a hook's return value would replace the module's output).
    """
    gm = graph.trace(model)
    tail = graph.epilogue(gm, path)
    seen = {}
    module = model.get_submodule(path)
    last = model.get_submodule(tail.bn) if tail.bn else module
    def keep(key, value):
        seen.setdefault(key, value.clone())

    hooks = [module.register_forward_hook(lambda m, a, o: keep("x", a[0])),
             last.register_forward_hook(lambda m, a, o: keep("y", o))]
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    return seen["x"], seen["y"], tail


def build_case(name: str, w_bits: int = 4, a_bits: int = 4, batch: int = 1, seed: int = 0,
               size: int = 224, isg_shift: int = ISG_SHIFT) -> LayerCase:
    net, info = zoo.resolve_layer(name, size)
    if info.kind != "conv" or info.groups != 1:
        raise PyiosoError(f"{name} is a {info.kind} layer; the integer case "
                                        "builder takes dense convs (use an alias or a conv path)")
    model = tv.build_model(net, seed=seed).eval()
    x_float, y_float, tail = _capture(model, info.path, sample_photos(batch, size, seed))
    y_float = {"relu": torch.relu, "relu6": lambda t: t.clamp(0, 6)}.get(tail.activation, lambda t: t)(y_float)
    x_coding, y_coding = observe_coding(x_float, a_bits), observe_coding(y_float, a_bits)
    bn = model.get_submodule(tail.bn) if tail.bn else None
    fc = float_conv(model.get_submodule(info.path), bn, tail.activation, x_coding, y_coding,
                    w_bits, isg_shift)
    x, sizes = encode(x_float, x_coding), hw_group_sizes(info.c_in)
    return LayerCase(name, net, info, x, fc, integer_conv(fc), y_float.permute(0, 2, 3, 1), sizes)
