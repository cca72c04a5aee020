"""Host driver: a golden layer and its input as engine passes (descriptor, memory images,
command stream), and the engine's responses back into output codes.

The driver refuses what the hardware cannot run, with a message, before any simulation; it
maps the layer (hw/mapping.py: dense parts, DW mode, folded stems, shift) and fills the passes
that hw/geometry.py cuts it into.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import golden
from golden.errors import PyiosoError
from golden.layers import check_accumulator, check_bn_product, check_multipliers, scaled_weights
from hw.geometry import Shape, check_shape, slices, tiles
from hw.host import LANE_BITS, TABLE_B, TABLE_M, WORD_BITS, Csr, Depths, Mode, Space
from hw.mapping import (at_engine_shift, dense_part, fold_kernel, on_depthwise_path, parts, stem_fold,
                        tiles_reused)


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


def tile_codes(layer: golden.Conv, rows: int) -> list[int]:
    """The ISG code of each input-channel tile; refuses a tile whose channels disagree (§4)."""
    codes = layer.isg_codes.tolist()
    out = []
    for ct in range(tiles(layer.c_in, rows)):
        tile = set(codes[ct * rows:(ct + 1) * rows])
        if len(tile) != 1:
            raise PyiosoError(f"input channels {ct * rows}..{min(layer.c_in, (ct + 1) * rows) - 1} "
                              f"hold ISG codes {sorted(tile)}: every tile of {rows} channels must "
                              "lie in one group (group sizes in multiples of the array's rows, "
                              "ARCHITECTURE §4)")
        out.append(tile.pop())
    return out


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
    check_multipliers(layer.requant.multiplier.tolist(), params.mult_width, "the multiplier M")
    scaled = scaled_weights(layer.weight, layer.isg_codes, layer.isg_shift, layer.groups)
    check_accumulator(scaled, layer.in_bits, params.acc_width)
    check_bn_product(scaled, layer.in_bits, layer.requant, params.t_width)
    tile_codes(layer, params.rows)
    return layer


def _pack(codes: np.ndarray) -> list[int]:
    """Rows of lane values (two's complement in LANE_BITS = 8 bits, lane 0 lowest) as ints."""
    raw = (codes.astype(np.int64) & ((1 << LANE_BITS) - 1)).astype(np.uint8)
    return [int.from_bytes(row.tobytes(), "little") for row in raw]


def pack_field(value: int, field: slice) -> int:
    """`value` in two's complement in the bits of `field` of a word. A value the field cannot
    hold is refused: the driver never truncates."""
    bits = field.stop - field.start
    if not -(1 << (bits - 1)) <= value < 1 << bits:
        raise PyiosoError(f"{value} does not fit a {bits}-bit field of the host interface "
                          "(ARCHITECTURE §6): the driver never truncates")
    return (value & ((1 << bits) - 1)) << field.start


def act_words(x: torch.Tensor, rows: int, pad_value: int) -> list[int]:
    h, w, c = x.shape
    ct = tiles(c, rows)
    padded = np.full((h, w, ct * rows), pad_value, dtype=np.int64)
    padded[:, :, :c] = x.numpy()
    return _pack(padded.reshape(h * w * ct, rows))


def _weight_rows(weight: torch.Tensor, nt0: int, nt1: int, rows: int, cols: int) -> list[int]:
    c_out, kh, kw, c_in = weight.shape
    ct = tiles(c_in, rows)
    w = np.zeros(((nt1 - nt0) * cols, kh, kw, ct * rows), dtype=np.int64)
    part = weight[nt0 * cols:nt1 * cols].numpy()
    w[:len(part), :, :, :c_in] = part
    # [nt, col, kh, kw, ct, r] -> [nt, kh, kw, ct, r, col]: a row holds 16 output channels
    w = w.reshape(nt1 - nt0, cols, kh, kw, ct, rows).transpose(0, 2, 3, 4, 5, 1)
    return _pack(w.reshape(-1, cols))


def _table(requant: golden.Requant, k0: int, k1: int) -> list[int]:
    m = requant.multiplier.tolist()
    b = requant.offset.tolist()
    return [pack_field(m[k], TABLE_M) | pack_field(b[k], TABLE_B) if k < len(m) else 0
            for k in range(k0, k1)]


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
    fold = stem_fold(shape, params, depths, mode)
    reuse = tiles_reused(fold, reuse)
    layer, x = fold_kernel(layer, x, fold)
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
