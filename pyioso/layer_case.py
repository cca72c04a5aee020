"""A named layer of a seeded torchvision network as an integer test case.

The float network (seeded weights, BN folded) runs on real Fashion-MNIST photos up to the layer; its input,
weights and output are quantized with the MSE observer; a valid hardware ISG grouping is
attached; fixedpoint turns it into the integer layer golden runs. The same case feeds the
golden main job here and the RTL testbenches later.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import golden
from golden.meaning import FloatConv
from pyioso import graph, tv, zoo
from pyioso.bn import fold_conv_bn
from pyioso.errors import PyiosoError
from pyioso.fixedpoint import integer_conv
from pyioso.images import sample_photos
from pyioso.observers import MSEObserver
from pyioso.quant import qrange, quantize

PAPER_GROUP_CODES = (0, -1, 1)      # scales (1, 1 - 2^-n, 1 + 2^-n), paper Sec. 4


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


def hw_group_sizes(c_in: int, granularity: int = 16) -> tuple[int, int, int]:
    """A valid 3-group split for the array (§4): about 1/2, 1/4, 1/4 of the K-tiles."""
    tiles = -(-c_in // granularity)
    first = max(1, tiles // 2)
    second, third = (tiles - first + 1) // 2, (tiles - first) // 2
    sizes = [first * granularity, second * granularity, third * granularity]
    sizes[[i for i, s in enumerate(sizes) if s][-1]] -= tiles * granularity - c_in
    return tuple(sizes)


def random_case(h: int, w: int, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                w_bits: int = 4, a_bits: int = 4, seed: int = 0, isg_shift: int = 4):
    """(input codes, integer layer) of any conv shape: seeded codes, scales, BN-like bias, ReLU
    and a valid hardware ISG split; for testing the engine on shapes no network has."""
    gen = torch.Generator().manual_seed(seed)
    unit = lambda n: torch.rand(n, generator=gen, dtype=torch.float64)  # noqa: E731
    k = (kernel, kernel)
    fc = FloatConv(
        weight=torch.randint(-2 ** (w_bits - 1), 2 ** (w_bits - 1), (c_out, *k, c_in), generator=gen),
        w_scale=(0.5 + unit(c_out)) / (2 ** (w_bits - 1) * (kernel * kernel * c_in) ** 0.5), w_bits=w_bits,
        in_scale=1.0 / 2 ** a_bits, in_zero_point=int(torch.randint(0, 2 ** a_bits, (1,), generator=gen)),
        in_bits=a_bits, out_scale=0.4 / 2 ** a_bits, out_zero_point=0, out_bits=a_bits,
        bias=unit(c_out) - 0.3, isg_shift=isg_shift,
        isg_codes=golden.channel_codes(hw_group_sizes(c_in), PAPER_GROUP_CODES) if isg_shift else None,
        activation="relu", stride=(stride, stride), padding=(padding, padding))
    x = torch.randint(0, 2 ** a_bits, (1, h, w, c_in), generator=gen)
    return x, integer_conv(fc)


def _qparams(x: torch.Tensor, bits: int, signed: bool, ch_axis: int | None = None):
    observer = MSEObserver(ch_axis=ch_axis)
    observer(x)
    return observer.calculate_qparams(bits, signed)


def _codes(x: torch.Tensor, scale, zero_point, bits: int, signed: bool, ch_axis=None) -> torch.Tensor:
    return quantize(x.detach(), scale, zero_point, *qrange(bits, signed), ch_axis).to(torch.int64)


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
               size: int = 224, isg_shift: int = 4) -> LayerCase:
    net, info = zoo.resolve_layer(name, size)
    if info.kind != "conv" or info.groups != 1:
        raise PyiosoError(f"{name} is a {info.kind} layer; the integer case "
                                        "builder takes dense convs (use an alias or a conv path)")
    model = tv.build_model(net, seed=seed).eval()
    x_float, y_float, tail = _capture(model, info.path, sample_photos(batch, size, seed))
    conv = model.get_submodule(info.path)
    weight, bias = fold_conv_bn(conv, model.get_submodule(tail.bn)) if tail.bn else (
        conv.weight.detach(), torch.zeros(conv.out_channels))
    y_float = {"relu": torch.relu, "relu6": lambda t: t.clamp(0, 6)}.get(tail.activation, lambda t: t)(y_float)

    s_x, z_x = _qparams(x_float, a_bits, signed=False)
    s_w, _ = _qparams(weight, w_bits, signed=True, ch_axis=0)
    s_y, z_y = _qparams(y_float, a_bits, signed=False)
    w_codes = _codes(weight, s_w, 0, w_bits, signed=True, ch_axis=0).permute(0, 2, 3, 1)
    x = _codes(x_float, s_x, z_x, a_bits, signed=False).permute(0, 2, 3, 1).contiguous()
    sizes = hw_group_sizes(info.c_in)
    golden.check_hw_grouping(sizes, info.c_in)
    fc = FloatConv(
        weight=w_codes, w_scale=s_w.to(torch.float64).flatten(), w_bits=w_bits,
        in_scale=float(s_x), in_zero_point=int(z_x), in_bits=a_bits,
        out_scale=float(s_y), out_zero_point=int(z_y), out_bits=a_bits,
        bias=bias.detach().to(torch.float64), isg_shift=isg_shift,
        isg_codes=golden.channel_codes(sizes, PAPER_GROUP_CODES) if isg_shift else None,
        activation=tail.activation,
        stride=info.stride, padding=info.padding, dilation=info.dilation, groups=info.groups)
    return LayerCase(name, net, info, x, fc, integer_conv(fc), y_float.permute(0, 2, 3, 1), sizes)
