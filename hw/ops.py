"""Every op of an integer network as engine passes (ARCHITECTURE §5, §6): convs and FC layers
as they are, pools as depthwise convs of ones (average: summed, max: the accumulator's MAX
mode; every weight tile the same, so the engine loads two: REUSE), residual adds on the add
path (ADD mode). `plan` is the one entry point a network
runner needs; `cycles` the model's count for the same op.
"""

from __future__ import annotations

import torch

import golden
from golden.errors import PyiosoError
from golden.layers import check_multipliers, conv_output_size
from hw import driver, geometry
from hw.host import MULTIPLIER_FIELD_BITS, Csr, Depths, Mode, address_registers

ONE = torch.ones((), dtype=torch.int64)


def _ones_conv(kernel, stride, padding, channels: int, in_bits: int, z_in: int,
               requant: golden.Requant) -> golden.Conv:
    """A depthwise conv of ones over `channels` (no ISG, n = 0: the driver rescales, §6)."""
    return golden.Conv(ONE.expand(channels, *kernel, 1).clone(), 2, in_bits, z_in, 0,
                       torch.zeros(channels, dtype=torch.int64), requant, tuple(stride),
                       tuple(padding), groups=channels)


def avg_pool_conv(pool: golden.AvgPool, channels: int) -> golden.Conv:
    """§5's average pool as a conv: S = the window's sum (padding counted as z), M = the pool's,
    B = -N*z*M, so t = S*M + B is the pool's t."""
    rq, taps = pool.requant, pool.kernel[0] * pool.kernel[1]
    m = rq.multiplier[0]
    table = golden.Requant(m.expand(channels).clone(), (-taps * pool.in_zero_point * m).expand(channels).clone(),
                           rq.shift, rq.zero_point, rq.bits, rq.lo, rq.hi)
    return _ones_conv(pool.kernel, pool.stride, pool.padding, channels, pool.in_bits,
                      pool.in_zero_point, table)


def max_pool_conv(pool: golden.MaxPool, channels: int) -> golden.Conv:
    """§5's max pool as a conv of ones in MAX mode: S = the largest code of the window (padding
    enters as code 0, which never wins over an in-bounds code), u = (2S + 1) >> 1 = S, and the
    output keeps the input's zero-point (y = S, clamped to the codes)."""
    top = 2 ** pool.bits - 1
    table = golden.Requant(torch.full((channels,), 2, dtype=torch.int64),
                           torch.zeros(channels, dtype=torch.int64), 1, 0, pool.bits, 0, top)
    return _ones_conv(pool.kernel, pool.stride, pool.padding, channels, pool.bits, 0, table)


def _image(x: torch.Tensor, what: str) -> None:
    if x.dim() != 4 or x.shape[0] != 1:
        raise PyiosoError(f"{what} of shape {tuple(x.shape)}: the engine takes one NHWC image")


def add_slices(h: int, w: int, c: int, params, depths: Depths = Depths()) -> list[tuple[int, int]]:
    """Row slices [r0, r1) of a residual add on an h x w x c tensor: the most rows whose two
    inputs fit ACT and whose sums fit OUT."""
    ct = -(-c // params.rows)
    rows = min(h, depths.act // (2 * w * ct), depths.out // (w * ct))
    if rows < 1:
        raise PyiosoError(f"one row of a residual add ({2 * w * ct:,} ACT words, {w * ct:,} OUT "
                          "words) does not fit the scratchpads: build the engine with larger ones")
    return [(r0, min(h, r0 + rows)) for r0 in range(0, h, rows)]


def op_shape(op, x_shape) -> geometry.Shape:
    """The conv shape an op runs as on one NHWC input of `x_shape`: a conv's own, a pool's
    depthwise conv, a residual add's 1x1 depthwise view (one word per pixel and tile)."""
    if isinstance(op, golden.Conv):
        return geometry.Shape.of(op, x_shape)
    _, h, w, c = x_shape
    if isinstance(op, golden.Add):
        return geometry.Shape(h, w, c, c, (1, 1), (1, 1), (0, 0), groups=c)
    return geometry.Shape(h, w, c, c, op.kernel, op.stride, op.padding, groups=c)


def mode_of(op) -> Mode:
    """The engine mode an op runs in."""
    return {golden.MaxPool: Mode.MAX, golden.Add: Mode.ADD}.get(type(op), Mode.CONV)


KINDS = {golden.Conv: "conv", golden.AvgPool: "avg_pool", golden.MaxPool: "max_pool", golden.Add: "add"}


def add_passes(add: golden.Add, x1: torch.Tensor, x2: torch.Tensor, params,
               depths: Depths = Depths()) -> list[driver.Pass]:
    """A residual add in row slices: ACT holds the slice of x1 then the same slice of x2,
    OUT the sums, both at one word per pixel and channel tile (NT = CT)."""
    _image(x1, "residual input 1")
    if x1.shape != x2.shape:
        raise PyiosoError(f"residual add of shapes {tuple(x1.shape)} and {tuple(x2.shape)}: "
                          "the two inputs must have the same shape")
    if max(*add.in_bits, add.requant.bits) > params.a_bits:
        raise PyiosoError(f"a residual add of {add.in_bits} bits into {add.requant.bits} exceeds the "
                          f"engine's {params.a_bits}-bit code ports")
    multipliers = add.requant.multiplier.tolist()
    check_multipliers(multipliers, params.mult_width, "the residual multiplier")
    m1, m2 = (driver.pack_field(m, slice(0, MULTIPLIER_FIELD_BITS)) for m in multipliers)
    _, h, w, c = x1.shape
    ct = -(-c // params.rows)
    (z1, z2), rq = add.zero_points, add.requant
    passes = []
    for r0, r1 in add_slices(h, w, c, params, depths):
        descriptor = {Csr.MODE: Mode.ADD, Csr.H: r1 - r0, Csr.W: w, Csr.CT: ct, Csr.NT: ct,
                      Csr.KH: 1, Csr.KW: 1, Csr.STRIDE: 1, Csr.PAD_TOP: 0, Csr.PAD_LEFT: 0,
                      Csr.HO: r1 - r0, Csr.WO: w, Csr.Z_IN: z1, Csr.Z_IN2: z2,
                      Csr.M1: m1, Csr.M2: m2,
                      Csr.SHIFT: rq.shift, Csr.Z_OUT: rq.zero_point, Csr.LO: rq.lo, Csr.HI: rq.hi,
                      Csr.REUSE: 0}
        descriptor |= address_registers(descriptor, params.rows)
        act = (driver.act_words(x1[0, r0:r1], params.rows, z1)
               + driver.act_words(x2[0, r0:r1], params.rows, z2))
        passes.append(driver.Pass(r0, r1, 0, ct, descriptor, act, [], [], []))
    return passes


def plan(op, inputs: list[torch.Tensor], params, depths: Depths = Depths()) -> list[driver.Pass]:
    """The passes that run one integer-network op (golden.Conv, AvgPool, MaxPool or Add) on its
    NHWC input codes; refuses what the engine cannot run, before any simulation."""
    if isinstance(op, golden.Add):
        return add_passes(op, *inputs, params, depths)
    x = inputs[0]
    _image(x, "input")
    if isinstance(op, golden.Conv):
        return driver.plan(op, x, params, depths)
    if isinstance(op, golden.AvgPool):
        return driver.plan(avg_pool_conv(op, x.shape[3]), x, params, depths, reuse=True)
    if isinstance(op, golden.MaxPool):
        golden.max_pool(x, op.kernel, op.stride, op.padding, op.bits)   # golden's own refusals
        return driver.plan(max_pool_conv(op, x.shape[3]), x, params, depths, Mode.MAX, reuse=True)
    raise PyiosoError(f"the engine has no mode for a {type(op).__name__}")


def output_shape(op, x_shape) -> tuple[int, int, int, int]:
    """NHWC shape of the op's output for one input image of `x_shape`."""
    if isinstance(op, golden.Add):
        return tuple(x_shape)
    ho, wo = conv_output_size(x_shape[1:3], op)
    return (1, ho, wo, op.weight.shape[0] if isinstance(op, golden.Conv) else x_shape[3])
