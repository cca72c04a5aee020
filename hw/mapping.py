"""How a golden layer becomes what the engine's passes run (ARCHITECTURE §6): grouped and
depthwise convs as dense parts with block-diagonal tiles, 3x3 depthwise convs on the depthwise
path, stems with their kernel window (or its columns) folded into channels, a smaller ISG
shift rescaled. Each choice is made from the shape alone, so the cycle model makes the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

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


class Fold(Enum):
    """How much of a stem's kernel window the driver moves into the input's channels (§6)."""

    NONE = "none"               # the layer as it is
    COLUMNS = "columns"         # a KH x 1 conv over KW*C_in channels
    FULL = "full"               # full im2col: a 1x1 conv over KH*KW*C_in channels on Ho x Wo


def stem_fold(shape: Shape, params, depths: Depths = Depths(), mode: Mode = Mode.CONV) -> Fold:
    """The fold the driver runs `shape` with, and so the cycle model: of those whose folded
    input fits the scratchpads, the one with the fewest K-tile steps per output pixel
    (KH*KW*tiles(C_in), KH*tiles(KW*C_in), tiles(KH*KW*C_in)), then the fewest input words for
    the host to send (a tie is common: 5x5x3 takes 5 K-tiles either way), then the lesser fold.
    Only a dense layer with fewer input channels than a K-tile folds (a network's stem): it is
    one ISG group (§4), so its code repeats over the folded channels and a K-tile keeps one."""
    check_shape(shape)          # a folded shape would hide a kernel or stride the engine refuses
    if not (mode == Mode.CONV and shape.groups == 1 and shape.c_in < params.rows):
        return Fold.NONE

    def cost(fold):
        folded = folded_shape(shape, fold)
        ct = tiles(folded.c_in, params.rows)
        return folded.kernel[0] * folded.kernel[1] * ct, folded.h * folded.w * ct

    return next(f for f in sorted(Fold, key=cost)
                if f is Fold.NONE or _fits(folded_shape(shape, f), params, depths))


def tiles_reused(fold: Fold, reuse: bool) -> bool:
    """Whether a pass loads two weight tiles for all of them (CSR REUSE): a pool's tiles are all
    the same, but not once folded (a pool over fewer channels than a K-tile): its last K-tile
    holds fewer taps than the others, so every tile is loaded. The driver and the cycle model
    both ask here."""
    return reuse and fold is Fold.NONE


def _fits(shape: Shape, params, depths: Depths) -> bool:
    """Whether the driver can split `shape` into passes that fit the scratchpads."""
    try:
        slices(shape, params, depths)
    except PyiosoError:
        return False
    return True


def folded_shape(shape: Shape, fold: Fold) -> Shape:
    """The shape of the layer the engine runs under `fold` (fold_kernel). The column fold keeps
    the rows and the stride, so it keeps (Wo - 1)*stride + 1 input columns; the full fold runs
    on the output grid."""
    if fold is Fold.NONE:
        return shape
    (kh, kw), stride = shape.kernel, shape.stride[1]
    ho, wo = conv_output_size((shape.h, shape.w), shape)
    if fold is Fold.COLUMNS:
        return replace(shape, w=(wo - 1) * stride + 1, c_in=kw * shape.c_in, kernel=(kh, 1),
                       padding=(shape.padding[0], 0))
    return replace(shape, h=ho, w=wo, c_in=kh * kw * shape.c_in, kernel=(1, 1), stride=(1, 1),
                   padding=(0, 0))


def _taps_into_channels(x: torch.Tensor, axis: int, taps: int, step: int, count: int, pad: int,
                        zero_point: int) -> torch.Tensor:
    """NHWC `x` with `axis` (1: rows, 2: columns) cut to `count` positions, position i holding
    the inputs i*step + t - pad of its `taps` kernel positions t in its channels (t outer,
    the zero-point outside the image)."""
    wide = torch.nn.functional.pad(x, [0, 0] * (3 - axis) + [pad, pad], value=zero_point)
    reads = (torch.arange(count)[:, None] * step + torch.arange(taps)[None, :]).flatten()
    return wide.index_select(axis, reads).unflatten(axis, (count, taps)).movedim(axis + 1, 3).flatten(3)


def fold_kernel(layer: golden.Conv, x: torch.Tensor, fold: Fold) -> tuple[golden.Conv, torch.Tensor]:
    """`layer` and its input as the engine runs them under `fold`: channel (kh*KW + kw)*C_in + c
    holds the input that kernel position (kh, kw) reads there (the zero-point outside the
    image), the weight's own memory order. S is unchanged (the same products) and the stem's
    K-tiles fill: a 7x7x3 kernel takes 10 tiles folded whole, 7 x 2 with its columns folded,
    49 unfolded (§6). The column fold keeps every input column between the strided ones (one
    stride for both axes); the full fold reads each output pixel's window once per pixel."""
    if fold is Fold.NONE:
        return layer, x
    shape = folded_shape(Shape.of(layer, x.shape), fold)
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
    z = layer.in_zero_point
    x = _taps_into_channels(x, 2, kw, sw if fold is Fold.FULL else 1, shape.w, pw, z)
    if fold is Fold.FULL:
        x = _taps_into_channels(x, 1, kh, sh, shape.h, ph, z)
    weight = layer.weight.reshape(layer.weight.shape[0], *shape.kernel, shape.c_in)
    return replace(layer, weight=weight, isg_codes=layer.isg_codes.repeat(shape.c_in // layer.c_in),
                   stride=shape.stride, padding=shape.padding), x


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


