"""How the engine's passes cut a layer: a layer's shape, one pass's geometry (output rows,
channel tiles, the input rows it loads, its descriptor registers), what each pass needs of the
scratchpads, and the split into passes that all fit (ARCHITECTURE §6). The driver fills the
passes with data; the cycle model counts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import golden
from golden.errors import PyiosoError
from golden.layers import conv_output_size
from hw.host import Csr, Depths, address_registers

MAX_KERNEL = 7


def tiles(n: int, size: int) -> int:
    return -(-n // size)


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
        return self.geometry[Csr.COLS_WALKED]


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
    ct, nt = tiles(shape.c_in, params.rows), tiles(shape.c_out, params.cols)
    if ct > depths.tiles:
        raise PyiosoError(f"{ct} input-channel tiles exceed the engine's {depths.tiles}")

    def one(r0, r1, nt0, nt1):
        top, bottom = max(0, r0 * stride - ph), min(h, (r1 - 1) * stride - ph + kh)
        geometry = {Csr.H: bottom - top, Csr.W: w, Csr.CT: nt1 - nt0 if depthwise else ct,
                    Csr.NT: nt1 - nt0, Csr.KH: kh, Csr.KW: kw, Csr.STRIDE: stride,
                    Csr.PAD_TOP: top - (r0 * stride - ph), Csr.PAD_LEFT: pw, Csr.HO: r1 - r0,
                    Csr.WO: wo, Csr.REUSE: int(reuse)}
        geometry |= address_registers(geometry, params.rows)
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


