"""Fault injection into the simulated engine: a regression that cannot fail proves nothing.

One bit of one weight, of one TABLE entry (M and B) and of one accumulator sum is flipped, each
in a run of a layer that passes unflipped; the layer check must FAIL every time, naming the
first differing output.
"""

import hashlib
import math
from pathlib import Path

import pytest

import hw.engine
from hw.accumulator import Accumulator
from hw.host import TABLE_B, TABLE_M
from hw.params import EngineParams
from pyioso.integer.intnet import run_op
from pyioso.integer.layer_case import random_case
from sim import layer as sim_layer, runner

# 6x6x20 -> 20, 3x3, padding 1: two K-tile channel tiles, two N-tiles, every weight used
X, LAYER = random_case(6, 6, 20, 20, 3, 1, 1, w_bits=4, a_bits=4, seed=3)
# The accumulator fault: in output pixel 0, a channel whose output is not clamped, the bit of
# its sum S worth at least 4 output steps (S*M >> F)
_Y, _RQ = run_op(LAYER, X), LAYER.requant
LANE = next(c for c in range(16) if _RQ.lo < _Y[0, 0, 0, c] < _RQ.hi)
BIT = max(0, math.ceil(math.log2(4 * 2 ** _RQ.shift / abs(int(_RQ.multiplier[LANE])))))


def _check(sim, edit=None) -> dict:
    result, seconds = sim_layer.simulate_op(sim, LAYER, [X], edit)
    return sim_layer.report("fault", LAYER, [X], result, sim, seconds)


def _flip(field: str, word: int, bit: int):
    def edit(passes):
        getattr(passes[0], field)[word] ^= 1 << bit
    return edit


def test_the_unflipped_layer_passes(isg_sim, small_sim):
    """On the product build and on SMALL_DEPTHS, where the accumulator fault is built."""
    assert sim_layer.passed(_check(isg_sim)) and sim_layer.passed(_check(small_sim))


@pytest.mark.parametrize("field, word, bit, what", [
    ("weight", 5, 3, "bit 3 of output channel 0's weight in WEIGHT row 5"),
    ("table", 7, TABLE_M.start + 22, "bit 22 of channel 7's multiplier M"),
    ("table", 2, TABLE_B.start + LAYER.requant.shift + 2, "the bit of channel 2's offset B worth 4 output steps"),
])
def test_a_flipped_memory_bit_fails_the_check(isg_sim, field, word, bit, what):
    rep = _check(isg_sim, _flip(field, word, bit))
    assert not sim_layer.passed(rep) and rep["mismatches"] > 0, what
    assert sim_layer.verdict(rep).startswith("FAIL")


class FlippedSum(Accumulator):
    """The accumulator with bit BIT of lane LANE of its first output sum inverted (the fault)."""

    def __init__(self, params, depth, tag_layout, out_tag_layout):
        super().__init__(params, depth, tag_layout, out_tag_layout)
        self._args = (params, depth, tag_layout, out_tag_layout)

    def elaborate(self, platform):
        from amaranth import Module, Mux
        from amaranth.lib import wiring

        m = Module()
        m.submodules.inner = inner = Accumulator(*self._args)
        wiring.connect(m, wiring.flipped(self.i), inner.i)
        m.d.comb += [inner.maximum.eq(self.maximum), self.o.valid.eq(inner.o.valid),
                     inner.o.ready.eq(self.o.ready), self.o.payload.eq(inner.o.payload)]
        first = inner.o.payload.tag.out == 0
        m.d.comb += self.o.payload.s[LANE].eq(inner.o.payload.s[LANE] ^ Mux(first, 1 << BIT, 0))
        return m


class FaultyEngine(hw.engine.Engine):
    """The engine built with FlippedSum: a class of its own, so its build is cached apart from
    the product's (the cache key holds the class name; the name holds this file's source)."""


FaultyEngine.__qualname__ += "-" + hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def test_a_flipped_accumulator_bit_fails_the_check(monkeypatch):
    monkeypatch.setattr(hw.engine, "Accumulator", FlippedSum)
    params = EngineParams()     # small scratchpads: a faster conversion to Verilog (test_engine.py)
    rep = _check(runner.build(FaultyEngine(params, sim_layer.SMALL_DEPTHS), "engine", params,
                              harness=sim_layer.HARNESS))
    assert not sim_layer.passed(rep) and rep["mismatches"] > 0
    assert rep["first_mismatch"] is not None
