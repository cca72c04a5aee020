"""Analytical cycle model of the engine: the CYCLES counter of a layer from its shape alone.

CYCLES counts from START to the cycle the last output word is written (ARCHITECTURE §6). Per
pass, with R x C the array, P = Ho*Wo the pass's output pixels, T = NT*KT its weight tiles and
cycle 0 the first cycle after START:

* The weight feed reads the first tile's R rows from cycle 0 (one register stage), so its last
  row is written in cycle R and the activation feed requests the tile's first vector in R + 1.
* The next tile's rows may load once the current tile's first vector is requested; row r may be
  written `row_drain(r)` array advances after the array took that vector (hw/array.py). The
  last row is written R + max(C, 2) - 1 cycles after the request, so first vectors are at least
  G = R + max(C, 2) cycles apart, and a tile holds the array for max(P, G) cycles.
* The array takes the last vector P cycles after the last tile's first one was requested; its
  codes are written D cycles later, D the sum of the units' latencies from the array's input to
  OUT (read from the RTL classes, so a unit that gains a stage moves the model). CYCLES counts
  cycle 0 up to that one:

      CYCLES = (R + 1) + (T - 1) * max(P, G) + P + D + 1

With L < C post-processing lanes the last K-tile of every N-tile leaves the accumulator at one
pixel per B = C/L cycles and stalls everything behind it, the feed included: B - 1 cycles per
pixel, except behind the last pixel of an N-tile when the next item is one the accumulator keeps
(KT > 1); behind the layer's last pixel nothing waits, but its B beats delay the end as much.

      + (B - 1) * (NT*P - (NT - 1)*[KT > 1])

That holds while the stalls reach the feed, i.e. the array is full: when every tile has P >= G
pixels. Shorter tiles leave bubbles that absorb part of the stalls; the model refuses them for
L < C rather than guess (with L = C, the default build, it covers every shape).
Checked equal to the RTL counter for every layer the testbenches simulate (sim/test_engine.py,
`make sim`, `make sim-net`, `make sim-random`: sim/layer.py compares each).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import golden
from golden.errors import PyiosoError
from golden.layers import conv_output_size
from hw import ops
from hw.accumulator import Accumulator
from hw.add_unit import AddFeed, AddUnit
from hw.depthwise import DepthwiseUnit, WindowFeed
from hw.array import SystolicArray
from hw.geometry import Shape, Slice, slices
from hw.mapping import folded_shape, on_depthwise_path, parts, stem_fold, tiles_reused
from hw.engine import REQUANT_UNITS
from hw.host import Csr, Depths, Mode
from hw.ioso import IosoUnit
from hw.lanes import Widen
from hw.params import EngineParams
from hw.postproc import ActUnit, BnUnit
from hw.tables import TableStage

CLOCK_MHZ = 400         # the paper's synthesis clock, for microseconds next to its Table 11


def datapath_depth(params: EngineParams) -> int:
    """Cycles from the array taking a vector to its codes written to OUT: array, IOSO unit,
    accumulator, table stage, BN (or FP16) unit, activation unit, and the width converter's
    register with fewer lanes than columns."""
    units = (SystolicArray.latency_of(params) + IosoUnit.latency_of(params) + Accumulator.latency
             + TableStage.latency + REQUANT_UNITS[params.requant].latency + ActUnit.latency)
    return units + (Widen.latency if params.lanes < params.cols else 0)


def tile_interval(params: EngineParams) -> int:
    """G: the fewest cycles between two weight tiles' first vectors (the next tile's load)."""
    return params.rows + max(params.cols, 2)


def depthwise_pass_cycles(s: Slice, params: EngineParams) -> int:
    """CYCLES of one DW pass: per channel tile the window feed reads nine weight words, then
    walks the tile's Hp x Wp padded input at one step per cycle; the last step's window leaves
    the feed `WindowFeed.latency` cycles later and passes the depthwise unit, table stage, BN
    and activation units; the OUT write is the last cycle counted."""
    steps = s.n_tiles * (WindowFeed.load_cycles + s.geometry[Csr.ROWS_WALKED] * s.padded_width)
    return (steps + WindowFeed.latency + DepthwiseUnit.latency + TableStage.latency
            + REQUANT_UNITS[params.requant].latency + ActUnit.latency)


def pass_cycles(s: Slice, params: EngineParams) -> int:
    """CYCLES of one pass (see the module doc)."""
    if s.depthwise:
        return depthwise_pass_cycles(s, params)
    pixels, n_tiles, k_tiles = s.pixels, s.n_tiles, s.k_tiles
    gap = tile_interval(params)
    tiles = n_tiles * k_tiles
    # each tile holds the array max(P, G) cycles while the next one loads; with REUSE only the
    # second tile loads, later tiles follow at once
    held = (max(pixels, gap) + (tiles - 2) * pixels if tiles > 1 else 0) if s.geometry[Csr.REUSE] \
        else (tiles - 1) * max(pixels, gap)
    cycles = params.rows + 1 + held + pixels + datapath_depth(params) + 1
    if params.lanes == params.cols:
        return cycles
    if pixels < gap:
        raise PyiosoError(f"a pass of {pixels} output pixels per weight tile with {params.lanes} "
                          f"post-processing lanes for {params.cols} columns: the cycle model "
                          f"covers fewer lanes than columns only for tiles of at least {gap} "
                          "pixels (shorter ones hide part of the post-processing stalls)")
    beats = params.cols // params.lanes
    return cycles + (beats - 1) * (n_tiles * pixels - (n_tiles - 1) * (k_tiles > 1))


@dataclass(frozen=True)
class LayerCycles:
    """A layer's cycles on the engine, from the model."""

    cycles: int         # CYCLES summed over the passes
    ideal: int          # a perfect array: Ho*Wo*KT*NT, one weight tile per pixel and cycle
    macs: int           # useful multiply-accumulates: Ho*Wo*KH*KW*C_in*C_out
    passes: int
    array_size: int     # R*C multipliers

    @property
    def utilization(self) -> float:
        """ideal / cycles: the schedule's efficiency (fills, tile loads, stalls)."""
        return self.ideal / self.cycles

    @property
    def mac_utilization(self) -> float:
        """Useful MACs per multiplier and cycle: also counts channels padded to whole tiles."""
        return self.macs / (self.cycles * self.array_size)

    @property
    def microseconds(self) -> float:
        return self.cycles / CLOCK_MHZ


def ideal_cycles(shape: Shape, params: EngineParams, depths: Depths = Depths(), mode: Mode = Mode.CONV) -> int:
    """Cycles of a perfect R x C array on the driver's dense parts: output pixels * K-tiles *
    N-tiles (a stem's K-tiles as folded, a grouped layer's block-diagonal tiles whole); in DW
    mode a perfect depthwise path: output pixels * channel tiles."""
    ho, wo = conv_output_size((shape.h, shape.w), shape)
    if on_depthwise_path(shape, params, depths, mode):
        return ho * wo * -(-shape.c_in // params.cols)
    shape = folded_shape(shape, stem_fold(shape, params, depths, mode))
    taps = shape.kernel[0] * shape.kernel[1]
    return sum(ho * wo * taps * -(-p.shape.c_in // params.rows) * -(-p.shape.c_out // params.cols)
               for p in parts(shape, params))


def layer_cycles(shape: Shape, params: EngineParams, depths: Depths = Depths(),
                 mode: Mode = Mode.CONV, reuse: bool = False) -> LayerCycles:
    """The model's cycles of one layer, over the passes the driver splits it into (`reuse`: a
    pool's identical weight tiles, driver.plan)."""
    if on_depthwise_path(shape, params, depths, mode):
        passes = slices(shape, params, depths, depthwise=True)
    else:
        fold = stem_fold(shape, params, depths, mode)
        passes = [s for part in parts(folded_shape(shape, fold), params)
                  for s in slices(part.shape, params, depths, reuse=tiles_reused(fold, reuse))]
    ho, wo = conv_output_size((shape.h, shape.w), shape)
    macs = ho * wo * shape.kernel[0] * shape.kernel[1] * shape.c_in // shape.groups * shape.c_out
    return LayerCycles(sum(pass_cycles(s, params) for s in passes),
                       ideal_cycles(shape, params, depths, mode), macs, len(passes), params.rows * params.cols)


def add_pass_cycles(items: int, params: EngineParams) -> int:
    """CYCLES of one ADD pass of `items` = pixels * CT words per input: the add feed reads the
    two words of an item in two cycles, the last item's second word arrives 2*items cycles
    after START; the feed's output register, add unit, BN and activation units follow, and
    the OUT write is the last cycle counted. With L < C lanes the converters would stall the
    feed at C/L beats per item; the model does not cover that build."""
    if params.lanes != params.cols:
        raise PyiosoError(f"the cycle model covers residual adds with as many post-processing "
                          f"lanes as columns ({params.cols}), not {params.lanes}")
    return 2 * items + AddFeed.latency + AddUnit.latency + BnUnit.latency + ActUnit.latency + 1


def op_cycles(op, x_shape, params: EngineParams, depths: Depths = Depths()) -> LayerCycles:
    """The model's cycles of any integer-network op on one NHWC input of `x_shape` (hw/ops.py):
    convs and pools over the driver's passes, residual adds over their row slices. Pools and
    adds count no MACs (the MAC bound is the convs' and FC layers')."""
    if isinstance(op, golden.Conv):
        return layer_cycles(Shape.of(op, x_shape), params, depths)
    if isinstance(op, (golden.AvgPool, golden.MaxPool)):
        shape = ops.op_shape(op, x_shape)
        return replace(layer_cycles(shape, params, depths, ops.mode_of(op), reuse=True), macs=0)
    if isinstance(op, golden.Add):
        _, h, w, c = x_shape
        ct = -(-c // params.rows)
        slices = ops.add_slices(h, w, c, params, depths)
        return LayerCycles(sum(add_pass_cycles((r1 - r0) * w * ct, params) for r0, r1 in slices),
                           h * w * ct, 0, len(slices), params.rows * params.cols)
    raise PyiosoError(f"the cycle model has no mode for a {type(op).__name__}")


def op_ideal(op, x_shape, params: EngineParams, depths: Depths = Depths()) -> int:
    """A perfect engine's cycles for the op: one array vector (ADD: one item) per cycle."""
    shape = ops.op_shape(op, x_shape)
    if isinstance(op, golden.Add):
        return shape.h * shape.w * -(-shape.c_in // params.rows)
    return ideal_cycles(shape, params, depths, ops.mode_of(op))


def network_cycles(steps, input_name: str, input_shape, params: EngineParams,
                   depths: Depths = Depths()) -> list[LayerCycles]:
    """The model's cycles of every op of an integer network (steps with op, inputs, output:
    pyioso.integer.intnet.Step) on one image of `input_shape`, in step order."""
    shapes, out = {input_name: tuple(input_shape)}, []
    for step in steps:
        x_shape = shapes[step.inputs[0]]
        out.append(op_cycles(step.op, x_shape, params, depths))
        shapes[step.output] = ops.output_shape(step.op, x_shape)
    return out
