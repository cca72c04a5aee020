"""How a golden layer becomes what the engine's passes run (ARCHITECTURE §6): grouped and
depthwise convs as dense parts with block-diagonal tiles, 3x3 depthwise convs on the depthwise
path, stems with their kernel columns folded into channels, a smaller ISG shift rescaled. Each
choice is made from the shape alone, so the cycle model makes the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

import golden
from golden.errors import PyiosoError
from golden.layers import conv_output_size, weight_input_channels
from golden.spec import MAX_SHIFT
from hw.geometry import Shape, check_shape, slices, tiles
from hw.host import Depths, Mode


@dataclass(frozen=True)
class Part:
    """A dense piece of a layer that the array runs as one conv: output channels [k0, k1) (the
    N-tiles from nt0) from input channels [c0, c1) (whole K-tiles from c0). A dense layer is
    one part; a grouped one is a part per run of N-tiles that read the same input tiles, its
    weight tiles block-diagonal (zeros between groups, ARCHITECTURE §6)."""

    nt0: int
    k0: int
    k1: int
    c0: int
    c1: int
    shape: Shape                # the part as a dense layer (groups = 1)


def parts(shape: Shape, params) -> list[Part]:
    """The dense parts of `shape`, in output-channel order."""
    check_shape(shape)
    rows, cols = params.rows, params.cols
    c_in_g, c_out_g = shape.c_in // shape.groups, shape.c_out // shape.groups
    spans = []                  # [k0, k1, c0, c1]: consecutive N-tiles with one input window
    for k0 in range(0, shape.c_out, cols):
        k1 = min(shape.c_out, k0 + cols)
        first, last = k0 // c_out_g, (k1 - 1) // c_out_g
        c0 = first * c_in_g // rows * rows
        c1 = min(shape.c_in, tiles((last + 1) * c_in_g, rows) * rows)
        if spans and spans[-1][2:] == [c0, c1]:
            spans[-1][1] = k1
        else:
            spans.append([k0, k1, c0, c1])
    return [Part(k0 // cols, k0, k1, c0, c1, replace(shape, c_in=c1 - c0, c_out=k1 - k0, groups=1))
            for k0, k1, c0, c1 in spans]


def folds_columns(shape: Shape, params, depths: Depths = Depths(), mode: Mode = Mode.CONV) -> bool:
    """Whether the driver folds the kernel's columns into the channels: a dense layer with
    fewer input channels than a K-tile (a network's stem; one ISG group by §4, so one code),
    where KW x C_in channels fill fewer K-tiles than KW taps of one padded tile each do, and
    the folded input still fits the scratchpads."""
    kw = shape.kernel[1]
    if not (mode == Mode.CONV and shape.groups == 1 and shape.c_in < params.rows
            and tiles(kw * shape.c_in, params.rows) < kw):
        return False
    try:
        slices(folded_shape(shape), params, depths)
    except PyiosoError:
        return False
    return True


def folded_shape(shape: Shape) -> Shape:
    """The shape of the column-folded layer (fold_columns)."""
    (kh, kw), stride = shape.kernel, shape.stride[1]
    wo = conv_output_size((shape.h, shape.w), shape)[1]
    return replace(shape, w=(wo - 1) * stride + 1, c_in=kw * shape.c_in, kernel=(kh, 1),
                   padding=(shape.padding[0], 0))


def fold_columns(layer: golden.Conv, x: torch.Tensor) -> tuple[golden.Conv, torch.Tensor]:
    """The same layer as a KH x 1 conv over KW x C_in channels: channel kw*C_in + c of column j
    holds input column j + kw - pad_left (the zero-point outside), so output column ow reads
    column ow*stride with all KW taps in its channels. S is unchanged (the same products), and
    the stem's K-tiles fill: a 7x7x3 kernel takes 7 x 2 tiles instead of 49 (§6)."""
    (kh, kw), pad = layer.kernel, layer.padding[1]
    shape = folded_shape(Shape.of(layer, x.shape))
    wide = torch.nn.functional.pad(x, (0, 0, pad, pad), value=layer.in_zero_point)
    columns = torch.arange(shape.w)[:, None] + torch.arange(kw)[None, :]        # [W', KW]
    folded = wide[:, :, columns, :].flatten(3)                                  # (kw, c) order
    weight = layer.weight.reshape(layer.weight.shape[0], kh, 1, shape.c_in)
    return replace(layer, weight=weight, isg_codes=layer.isg_codes.repeat(kw),
                   padding=(layer.padding[0], 0)), folded


def dense_part(layer: golden.Conv, part: Part) -> golden.Conv:
    """`layer`'s output channels [k0, k1) as a dense conv over input channels [c0, c1): each
    output channel's weights at its group's inputs, zeros elsewhere."""
    if layer.groups == 1 and (part.k0, part.c0) == (0, 0) and part.k1 == layer.weight.shape[0]:
        return layer
    _, kh, kw, c_in_g = layer.weight.shape
    reads = weight_input_channels(layer.weight.shape, layer.groups)[part.k0:part.k1] - part.c0
    weight = torch.zeros(part.k1 - part.k0, kh, kw, part.c1 - part.c0, dtype=layer.weight.dtype)
    weight.scatter_(3, reads[:, None, None, :].expand(-1, kh, kw, c_in_g), layer.weight[part.k0:part.k1])
    rq = layer.requant
    return replace(layer, weight=weight, groups=1, isg_codes=layer.isg_codes[part.c0:part.c1],
                   requant=replace(rq, multiplier=rq.multiplier[part.k0:part.k1],
                                   offset=rq.offset[part.k0:part.k1]))


def at_engine_shift(layer: golden.Conv, params) -> golden.Conv:
    """`layer` with the IOSO unit's shift n of the build. A layer without ISG codes (a
    depthwise conv, §2) built with a smaller shift n' is the same layer with S scaled by
    2^d, d = n - n', and F and B raised to match: u = (2^d*(S*M + B) + 2^(F+d-1)) >> (F+d)
    is the layer's own u (§3), so golden's outputs do not change. Any other shift is refused."""
    shift = params.isg_shift if params.isg else 0
    gap = shift - layer.isg_shift
    if gap == 0 and (params.isg or not layer.isg_codes.any()):
        return layer
    rq = layer.requant
    if gap < 0 or layer.isg_codes.any() or rq.shift + gap > MAX_SHIFT:
        raise PyiosoError(f"the layer uses ISG shift n={layer.isg_shift}, the engine was built with "
                          f"{'n=' + str(shift) if params.isg else 'no IOSO unit (n=0, all codes 0)'}")
    return replace(layer, isg_shift=shift, requant=replace(rq, shift=rq.shift + gap, offset=rq.offset << gap))


def on_depthwise_path(shape: Shape, params, depths: Depths = Depths(), mode: Mode = Mode.CONV) -> bool:
    """Whether the driver runs `shape` in DW mode: a 3x3 depthwise conv (or average pool) on an
    engine with a post-processing lane per column (the window feed does not stall), whose
    padded rows fit the line buffers; other depthwise layers run as block-diagonal parts."""
    if not (mode == Mode.CONV and shape.groups > 1 and shape.groups == shape.c_in == shape.c_out
            and tuple(shape.kernel) == (3, 3) and params.lanes == params.cols):
        return False
    wo = conv_output_size((shape.h, shape.w), shape)[1]
    return (wo - 1) * shape.stride[1] + 3 <= depths.line


