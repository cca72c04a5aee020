"""Host driver: a golden layer and its input as engine passes (descriptor, memory images,
command stream), and the engine's responses back into output codes.

The driver refuses what the hardware cannot run, with a message, before any simulation. A
grouped or depthwise layer runs as dense parts with block-diagonal weight tiles; a layer (part)
larger than the scratchpads is split into passes over output rows and output-channel tiles.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

import golden
from golden.errors import PyiosoError
from golden.layers import (check_accumulator, check_bn_product, conv_output_size, scaled_weights,
                           weight_input_channels)
from golden.spec import MAX_SHIFT
from hw.host import LANE_BITS, TABLE_B, TABLE_M, WORD_BITS, Csr, Depths, Mode, Space

MAX_KERNEL = 7


@dataclass(frozen=True)
class Pass:
    """One run of the engine: output rows [row0, row1) and channel tiles [nt0, nt1)."""

    row0: int
    row1: int
    nt0: int
    nt1: int
    descriptor: dict            # Csr -> value
    act: list[int]              # ACT words
    weight: list[int]           # WEIGHT rows
    table: list[int]            # TABLE words, one per output channel of the pass
    codes: list[int]            # CODE words, one per input-channel tile

    @property
    def pixels(self) -> int:
        return self.descriptor[Csr.HO] * self.descriptor[Csr.WO]

    @property
    def out_words(self) -> int:
        return self.pixels * (self.nt1 - self.nt0)


def _tiles(n: int, size: int) -> int:
    return -(-n // size)


def tile_codes(layer: golden.Conv, rows: int) -> list[int]:
    """The ISG code of each input-channel tile; refuses a tile whose channels disagree (§4)."""
    codes = layer.isg_codes.tolist()
    out = []
    for ct in range(_tiles(layer.c_in, rows)):
        tile = set(codes[ct * rows:(ct + 1) * rows])
        if len(tile) != 1:
            raise PyiosoError(f"input channels {ct * rows}..{min(layer.c_in, (ct + 1) * rows) - 1} "
                              f"hold ISG codes {sorted(tile)}: every tile of {rows} channels must "
                              "lie in one group (group sizes in multiples of the array's rows, "
                              "ARCHITECTURE §4)")
        out.append(tile.pop())
    return out


@dataclass(frozen=True)
class Shape:
    """A conv/FC layer as the engine's passes and timing see it: one h x w x c_in input image
    into c_out channels. `hw.cycles` takes the same shape from the layer zoo."""

    h: int
    w: int
    c_in: int
    c_out: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    @classmethod
    def of(cls, layer: golden.Conv, x_shape) -> Shape:
        """The shape of `layer` on an NHWC input of `x_shape` (refused unless one image of the
        layer's channels)."""
        if len(x_shape) != 4 or x_shape[0] != 1 or x_shape[3] != layer.c_in:
            raise PyiosoError(f"input of shape {tuple(x_shape)}: the engine takes one NHWC image "
                              f"with {layer.c_in} channels")
        return cls(x_shape[1], x_shape[2], layer.c_in, layer.weight.shape[0], layer.kernel,
                   layer.stride, layer.padding, layer.dilation, layer.groups)


@dataclass(frozen=True)
class Slice:
    """The geometry of one pass: output rows [row0, row1), channel tiles [nt0, nt1), input rows
    [top, bottom) in ACT, and the descriptor registers that follow from them."""

    row0: int
    row1: int
    nt0: int
    nt1: int
    top: int
    bottom: int
    geometry: dict              # Csr -> value, the shape registers of the descriptor
    depthwise: bool = False     # DW mode: input tiles = the pass's channel tiles

    @property
    def pixels(self) -> int:
        return self.geometry[Csr.HO] * self.geometry[Csr.WO]

    @property
    def n_tiles(self) -> int:
        return self.nt1 - self.nt0

    @property
    def k_tiles(self) -> int:
        g = self.geometry
        return g[Csr.KH] * g[Csr.KW] * g[Csr.CT]

    @property
    def padded_width(self) -> int:
        """Wp: the columns a DW pass walks, padding included."""
        g = self.geometry
        return (g[Csr.WO] - 1) * g[Csr.STRIDE] + g[Csr.KW]


def check_shape(shape: Shape) -> None:
    """Every shape the engine cannot run, refused before a simulation starts (ARCHITECTURE §6)."""
    kh, kw = shape.kernel
    if max(kh, kw) > MAX_KERNEL:
        raise PyiosoError(f"kernel {kh}x{kw} is larger than the engine's {MAX_KERNEL}x{MAX_KERNEL}")
    if shape.groups < 1 or shape.c_in % shape.groups or shape.c_out % shape.groups:
        raise PyiosoError(f"groups={shape.groups} must divide C_in={shape.c_in} and C_out={shape.c_out}")
    if tuple(shape.dilation) != (1, 1):
        raise PyiosoError(f"dilation {tuple(shape.dilation)} is not supported by the engine: use 1")
    if shape.stride[0] != shape.stride[1] or shape.stride[0] > MAX_KERNEL:
        raise PyiosoError(f"stride {tuple(shape.stride)}: the engine takes one stride of "
                          f"1..{MAX_KERNEL}")
    conv_output_size((shape.h, shape.w), shape)


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
        c1 = min(shape.c_in, _tiles((last + 1) * c_in_g, rows) * rows)
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
            and _tiles(kw * shape.c_in, params.rows) < kw):
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
    (kh, kw), stride, pad = layer.kernel, layer.stride[1], layer.padding[1]
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


def check_layer(layer: golden.Conv, params, x_shape) -> golden.Conv:
    """Everything the engine cannot run, refused before a simulation starts; returns the layer
    as the engine runs it (at_engine_shift)."""
    if not params.runs_golden:
        raise PyiosoError(f"an engine built with isg_unit={params.isg_unit!r}, "
                          f"requant={params.requant!r}, a {params.rows}x{params.cols} array is an "
                          "area-report variant: it computes no golden layer (build it with the "
                          "defaults to run one)")
    check_shape(Shape.of(layer, x_shape))
    if layer.w_bits > params.w_bits or layer.in_bits > params.a_bits or layer.requant.bits > params.a_bits:
        raise PyiosoError(f"bit widths W{layer.w_bits}A{layer.in_bits}->A{layer.requant.bits} exceed "
                          f"the engine's {params.w_bits}-bit weight and {params.a_bits}-bit code ports")
    layer = at_engine_shift(layer, params)
    scaled = scaled_weights(layer.weight, layer.isg_codes, layer.isg_shift, layer.groups)
    check_accumulator(scaled, layer.in_bits, params.acc_width)
    check_bn_product(scaled, layer.in_bits, layer.requant, params.t_width)
    tile_codes(layer, params.rows)
    return layer


def _pack(codes: np.ndarray) -> list[int]:
    """Rows of lane values (two's complement in LANE_BITS = 8 bits, lane 0 lowest) as ints."""
    raw = (codes.astype(np.int64) & ((1 << LANE_BITS) - 1)).astype(np.uint8)
    return [int.from_bytes(row.tobytes(), "little") for row in raw]


def _field(value: int, field: slice) -> int:
    """`value` in two's complement in the bits of `field` of a word."""
    return (value & ((1 << (field.stop - field.start)) - 1)) << field.start


def act_words(x: torch.Tensor, rows: int, pad_value: int) -> list[int]:
    h, w, c = x.shape
    ct = _tiles(c, rows)
    padded = np.full((h, w, ct * rows), pad_value, dtype=np.int64)
    padded[:, :, :c] = x.numpy()
    return _pack(padded.reshape(h * w * ct, rows))


def _weight_rows(weight: torch.Tensor, nt0: int, nt1: int, rows: int, cols: int) -> list[int]:
    c_out, kh, kw, c_in = weight.shape
    ct = _tiles(c_in, rows)
    w = np.zeros(((nt1 - nt0) * cols, kh, kw, ct * rows), dtype=np.int64)
    part = weight[nt0 * cols:nt1 * cols].numpy()
    w[:len(part), :, :, :c_in] = part
    # [nt, col, kh, kw, ct, r] -> [nt, kh, kw, ct, r, col]: a row holds 16 output channels
    w = w.reshape(nt1 - nt0, cols, kh, kw, ct, rows).transpose(0, 2, 3, 4, 5, 1)
    return _pack(w.reshape(-1, cols))


def _table(requant: golden.Requant, k0: int, k1: int) -> list[int]:
    m = requant.multiplier.tolist()
    b = requant.offset.tolist()
    return [_field(m[k], TABLE_M) | _field(b[k], TABLE_B) if k < len(m) else 0
            for k in range(k0, k1)]


def _split(total: int, fits) -> int | None:
    """Largest chunk size in 1..total with fits(size), or None."""
    return next((size for size in range(total, 0, -1) if fits(size)), None)


# What each scratchpad of Depths holds, for messages.
SCRATCHPAD_UNITS = {"act": "ACT words", "weight": "WEIGHT rows", "channels": "TABLE entries",
                    "acc": "accumulator rows", "out": "OUT words", "line": "line-buffer words"}


def overflows(s: Slice, params, depths: Depths) -> dict[str, int]:
    """The scratchpads (Depths' names) that cannot hold what pass `s` loads or produces, with
    the words it needs (ARCHITECTURE §6); empty when the pass fits."""
    g = s.geometry
    needs = {"act": g[Csr.H] * g[Csr.W] * g[Csr.CT], "channels": s.n_tiles * params.cols,
             "out": s.pixels * s.n_tiles}
    if s.depthwise:             # nine weight words per tile, the line buffers, no accumulator
        needs |= {"weight": s.k_tiles, "line": s.padded_width}
    else:
        tiles = min(2, s.n_tiles * s.k_tiles) if g[Csr.REUSE] else s.n_tiles * s.k_tiles
        needs |= {"weight": tiles * params.rows, "acc": s.pixels}
    return {name: need for name, need in needs.items() if need > getattr(depths, name)}


def on_depthwise_path(shape: Shape, params, depths: Depths = Depths(), mode: Mode = Mode.CONV) -> bool:
    """Whether the driver runs `shape` in DW mode: a 3x3 depthwise conv (or average pool) on an
    engine with a post-processing lane per column (the window feed does not stall), whose
    padded rows fit the line buffers; other depthwise layers run as block-diagonal parts."""
    if not (mode == Mode.CONV and shape.groups > 1 and shape.groups == shape.c_in == shape.c_out
            and tuple(shape.kernel) == (3, 3) and params.lanes == params.cols):
        return False
    wo = conv_output_size((shape.h, shape.w), shape)[1]
    return (wo - 1) * shape.stride[1] + 3 <= depths.line


def slices(shape: Shape, params, depths: Depths = Depths(), depthwise: bool = False,
           reuse: bool = False) -> list[Slice]:
    """How the engine runs a dense `shape` (one part), or a depthwise one in DW mode: passes over chunks of N-tiles (outer) and output rows
    (inner). The chunk sizes are the largest whose every pass fits the scratchpads: the most
    N-tiles for which one output row fits, then the most output rows. Every slice is checked,
    not only the first: a slice below the top padding needs more input rows for as many output
    rows (each slice carries its own `pad_top`; bottom and right padding follow from the
    bounds check)."""
    check_shape(shape)
    if shape.groups != 1 and not depthwise:
        raise ValueError("slices() takes a dense shape: split a grouped one with parts()")
    h, w = shape.h, shape.w
    (kh, kw), stride, (ph, pw) = shape.kernel, shape.stride[0], shape.padding
    ho, wo = conv_output_size((h, w), shape)
    ct, nt = _tiles(shape.c_in, params.rows), _tiles(shape.c_out, params.cols)
    if ct > depths.tiles:
        raise PyiosoError(f"{ct} input-channel tiles exceed the engine's {depths.tiles}")

    def one(r0, r1, nt0, nt1):
        top, bottom = max(0, r0 * stride - ph), min(h, (r1 - 1) * stride - ph + kh)
        geometry = {Csr.H: bottom - top, Csr.W: w, Csr.CT: nt1 - nt0 if depthwise else ct,
                    Csr.NT: nt1 - nt0, Csr.KH: kh, Csr.KW: kw, Csr.STRIDE: stride,
                    Csr.PAD_TOP: top - (r0 * stride - ph), Csr.PAD_LEFT: pw, Csr.HO: r1 - r0,
                    Csr.WO: wo, Csr.REUSE: int(reuse)}
        return Slice(r0, r1, nt0, nt1, top, bottom, geometry, depthwise)

    def layout(r_chunk, n_chunk):
        return [one(r0, min(ho, r0 + r_chunk), nt0, min(nt, nt0 + n_chunk))
                for nt0 in range(0, nt, n_chunk) for r0 in range(0, ho, r_chunk)]

    def all_fit(r_chunk, n_chunk):
        return not any(overflows(s, params, depths) for s in layout(r_chunk, n_chunk))

    n_chunk = _split(nt, lambda n: all_fit(1, n))
    if n_chunk is None:
        worst = {}
        for s in layout(1, 1):
            for name, need in overflows(s, params, depths).items():
                worst[name] = max(need, worst.get(name, 0))
        needs = ", ".join(f"{need:,} {SCRATCHPAD_UNITS[name]} of {getattr(depths, name):,}"
                          for name, need in worst.items())
        raise PyiosoError(f"even one output row of one channel tile does not fit the scratchpads "
                          f"(it needs {needs}): build the engine with larger scratchpads")
    return layout(_split(ho, lambda r: all_fit(r, n_chunk)), n_chunk)


def plan(layer: golden.Conv, x: torch.Tensor, params, depths: Depths = Depths(),
         mode: Mode = Mode.CONV, reuse: bool = False) -> list[Pass]:
    """The passes that run `layer` on one NHWC image `x` (codes) on the engine; in MAX mode the
    accumulator keeps the largest product instead of the sum (a max pool, hw/ops.py). `reuse`:
    every weight tile of each part is the same (a pool's ones), so two are loaded (CSR REUSE)."""
    layer = check_layer(layer, params, x.shape)
    rows, cols = params.rows, params.cols
    rq = layer.requant
    values = {Csr.MODE: mode, Csr.Z_IN: layer.in_zero_point, Csr.SHIFT: rq.shift,
              Csr.Z_OUT: rq.zero_point, Csr.LO: rq.lo, Csr.HI: rq.hi}
    shape = Shape.of(layer, x.shape)
    if on_depthwise_path(shape, params, depths, mode) and not layer.isg_codes.any():
        return _depthwise_passes(layer, x, shape, params, depths, values)
    if folds_columns(shape, params, depths, mode):
        layer, x = fold_columns(layer, x)
        shape = Shape.of(layer, x.shape)
    passes = []
    for part in parts(shape, params):
        dense = dense_part(layer, part)
        codes = [c & 3 for c in tile_codes(dense, rows)]
        weights = {}            # one weight image per channel chunk, shared by its passes
        for s in slices(part.shape, params, depths, reuse=reuse):
            if s.nt0 not in weights:
                image = _weight_rows(dense.weight, s.nt0, s.nt1, rows, cols)
                weights[s.nt0] = (image[:2 * rows] if reuse else image,
                                  _table(dense.requant, s.nt0 * cols, s.nt1 * cols))
            act = act_words(x[0, s.top:s.bottom, :, part.c0:part.c1], rows, layer.in_zero_point)
            passes.append(Pass(s.row0, s.row1, part.nt0 + s.nt0, part.nt0 + s.nt1,
                               {**s.geometry, **values}, act, *weights[s.nt0], codes))
    return passes


def _depthwise_passes(layer: golden.Conv, x: torch.Tensor, shape: Shape, params, depths: Depths,
                      values: dict) -> list[Pass]:
    """A 3x3 depthwise layer in DW mode: each pass holds its channel tiles' input rows in ACT
    and nine WEIGHT words per tile (word ct*9 + kh*3 + kw, lane k: channel ct*16 + k)."""
    cols = params.cols
    passes, weights = [], {}
    for s in slices(shape, params, depths, depthwise=True):
        k0, k1 = s.nt0 * cols, s.nt1 * cols
        if s.nt0 not in weights:
            w = np.zeros((s.n_tiles * cols, 3, 3), dtype=np.int64)
            part = layer.weight[k0:k1, :, :, 0].numpy()
            w[:len(part)] = part
            words = w.reshape(s.n_tiles, cols, 9).transpose(0, 2, 1).reshape(-1, cols)
            weights[s.nt0] = (_pack(words), _table(layer.requant, k0, k1))
        act = act_words(x[0, s.top:s.bottom, :, k0:k1], params.rows, layer.in_zero_point)
        passes.append(Pass(s.row0, s.row1, s.nt0, s.nt1, {**s.geometry, **values, Csr.MODE: Mode.DW},
                           act, *weights[s.nt0], []))
    return passes


def commands(p: Pass, previous: Pass | None = None) -> list[tuple[int, int, int, int]]:
    """(write, space, addr, data) commands that load what changed since `previous` and start."""
    cmds = [(1, Space.CSR, int(reg), int(v)) for reg, v in p.descriptor.items()]
    cmds += [(1, Space.ACT, a, v) for a, v in enumerate(p.act)]
    if previous is None or previous.weight is not p.weight:
        cmds += [(1, Space.WEIGHT, a, v) for a, v in enumerate(p.weight)]
        cmds += [(1, Space.TABLE, a, v) for a, v in enumerate(p.table)]
    if previous is None or previous.codes != p.codes:
        cmds += [(1, Space.CODE, a, v) for a, v in enumerate(p.codes)]
    return cmds + [(1, Space.CSR, int(Csr.START), 0)]


def readback(p: Pass) -> list[tuple[int, int, int, int]]:
    """Commands that read a finished pass's outputs and counters, in that order."""
    return ([(0, Space.OUT, a, 0) for a in range(p.out_words)]
            + [(0, Space.CSR, int(c), 0) for c in (Csr.CYCLES, Csr.BUSY, Csr.STALL)])


def unpack_outputs(p: Pass, words: list[int], cols: int) -> torch.Tensor:
    """OUT words of a pass as codes [rows, Wo, channels of the pass]."""
    raw = np.frombuffer(b"".join(w.to_bytes(WORD_BITS // 8, "little") for w in words), dtype=np.uint8)
    ho, wo = p.row1 - p.row0, p.descriptor[Csr.WO]
    return torch.from_numpy(raw.reshape(ho, wo, (p.nt1 - p.nt0) * cols).astype(np.int64))
