"""cocotb testbench of hw.array.SystolicArray against numpy, bit-exact.

Tiles of weights are loaded through `w_load` and switched in by `swap`, as a controller may do:
tile j's swap vector is offered once its R rows were accepted, and the rows of tile j as soon as
tile j-1's swap vector is on the stream (the array holds them back until the swap is taken and
the old tile has left each row). Checked: every output vector and its tag, the documented
`w_load.ready` rule in every cycle, and at full rate the exact latency and tile switches without
a bubble. Weights include -2^(b-1) and 2^(b-1)-1, codes 0 and 2^a-1.
"""

import cocotb
import numpy as np
from amaranth import signed, unsigned
from amaranth.lib import data

from hw.array import SystolicArray
from sim import streams

TAG = data.StructLayout({"addr": unsigned(9), "group": signed(2), "last": 1})


def make_dut(params):
    return SystolicArray(params, TAG)


def make_tiles(rng, params, lengths):
    """(weights [R, C], codes [n, R]) per tile, a quarter of the entries at the code bounds.
    Tiles 0 and 1 put the most negative and most positive weights against all-ones codes, so
    the partial sums reach both ends of their range."""
    w_lo, w_hi = -2 ** (params.w_bits - 1), 2 ** (params.w_bits - 1) - 1
    x_hi = 2 ** params.a_bits - 1
    tiles = []
    for j, n in enumerate(lengths):
        w = rng.integers(w_lo, w_hi + 1, (params.rows, params.cols))
        w = np.where(rng.random(w.shape) < 0.25, rng.choice([w_lo, w_hi], w.shape), w)
        x = rng.integers(0, x_hi + 1, (n, params.rows))
        x = np.where(rng.random(x.shape) < 0.25, rng.choice([0, x_hi], x.shape), x)
        if j < 2:
            w[:], x[:] = (w_lo, w_hi)[j], x_hi
        tiles.append((w, x))
    return tiles


class LoadRule:
    """The `w_load.ready` rule of hw/array.py in Python, compared with the DUT every cycle."""

    def __init__(self, dut, array):
        self.dut, self.array = dut, array
        self.i_layout = streams.payload_layout(array, "i")
        self.w_layout = streams.payload_layout(array, "w_load")
        self.saturated = array.row_drain(array.params.rows - 1)
        self.drain = self.saturated      # advances since the last swap; saturated from reset

    def __call__(self, cycle):
        dut = self.dut
        swap = bool(dut.i__valid.value) and bool(
            self.i_layout.from_bits(dut.i__payload.value.to_unsigned()).swap)
        advance = not dut.o__valid.value or bool(dut.o__ready.value)
        if dut.w_load__valid.value:
            row = self.w_layout.from_bits(dut.w_load__payload.value.to_unsigned()).row
            expected = not swap and self.drain >= self.array.row_drain(row)
            assert bool(dut.w_load__ready.value) == expected, (
                f"cycle {cycle}: w_load.ready for row {row} is {int(dut.w_load__ready.value)}, "
                f"the rule says {int(expected)} ({self.drain} advances since the swap)")
        if advance:
            self.drain = 0 if swap else min(self.drain + 1, self.saturated)


async def stream_tiles(dut, array, tiles, *, rng, bubbles=0.0, stalls=0.0):
    """Runs `tiles` through the array and checks every output; returns (inputs, sink)."""
    rows = array.params.rows
    starts = np.cumsum([0] + [len(x) for _, x in tiles])
    tile_of = np.repeat(np.arange(len(tiles)), np.diff(starts))
    vectors, expected = [], []
    for w, x in tiles:
        for k, codes in enumerate(x):
            tag = {"addr": len(vectors) % 512, "group": int(rng.integers(-1, 2)),
                   "last": int(k == len(x) - 1)}
            vectors.append({"x": codes.tolist(), "swap": int(k == 0), "tag": tag})
            expected.append({"p": (codes @ w).tolist(), "tag": tag})
    rows_in = [{"row": r, "w": w[r].tolist()} for w, _ in tiles for r in range(rows)]

    inputs = streams.Source(
        dut, "i", streams.payload_layout(array, "i"), vectors, rng=rng, bubbles=bubbles,
        gate=lambda k: not vectors[k]["swap"] or weights.accepted >= rows * (tile_of[k] + 1))
    weights = streams.Source(
        dut, "w_load", streams.payload_layout(array, "w_load"), rows_in, rng=rng,
        bubbles=bubbles, gate=lambda q: q < rows or inputs.offered > starts[q // rows - 1])
    sink = streams.Sink(dut, "o", streams.payload_layout(array, "o"), rng=rng, stalls=stalls)
    await streams.run(dut, [inputs, weights], sink, len(vectors),
                      max_cycles=20 * (len(vectors) + rows * len(tiles)) + 100,
                      monitor=LoadRule(dut, array))
    streams.expect(sink, expected)
    return inputs, sink


@cocotb.test()
async def full_rate_tiles(dut):
    """Tiles of `latency` vectors and more follow each other with no bubble, each vector leaves
    exactly `latency` cycles after it entered, and the first tile's load costs R cycles."""
    array = make_dut(streams.dut_params())
    rng = await streams.reset(dut, array)
    lengths = [array.latency, array.latency, 2 * array.latency, array.latency + 3, array.latency]
    tiles = make_tiles(rng, array.params, lengths)
    inputs, sink = await stream_tiles(dut, array, tiles, rng=rng)
    assert inputs.cycles[0] == array.params.rows, f"first vector in cycle {inputs.cycles[0]}"
    streams.expect_full_rate(inputs, sink, array.latency)


@cocotb.test()
async def short_tiles_backpressure(dut):
    """Tiles of 1 vector and up, with random input/weight bubbles and output backpressure."""
    array = make_dut(streams.dut_params())
    rng = await streams.reset(dut, array)
    latency = array.latency
    lengths = [1, 2, 3, latency - 1, latency, 1, 1, *rng.integers(1, 2 * latency, 30)]
    tiles = make_tiles(rng, array.params, lengths)
    await stream_tiles(dut, array, tiles, rng=rng, bubbles=0.2, stalls=0.3)
