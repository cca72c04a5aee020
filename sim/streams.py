"""Python-per-cycle stream drivers and checks shared by the unit testbenches.

Every cycle the drivers write on the falling edge, away from the sampling edge, then read the
settled handshakes in ReadOnly of the same time step: a beat counts exactly when valid and ready
are both high at the next rising edge. That is two awaits per cycle, about 30k cycles/s, fine
for unit tests of a few thousand cycles; layer-sized runs need memory-fed harnesses instead.
Payloads are packed and unpacked with the DUT's own Amaranth layouts.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from amaranth.lib import data, wiring
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from hw.params import EngineParams
from sim.runner import PARAMS_ENV, ports

PERIOD_NS = 10


def dut_params() -> EngineParams:
    """The parameters the simulator was built for (set by sim.runner.run)."""
    return EngineParams.from_json(os.environ[PARAMS_ENV])


def payload_layout(component, stream_name: str) -> data.Layout:
    """The payload layout of one of `component`'s streams."""
    return getattr(component, stream_name).payload.shape()


def to_python(value):
    """A `data.Const` as nested dicts and lists of ints (readable, comparable to test data)."""
    if not isinstance(value, data.Const):
        return value
    if isinstance(value.shape(), data.ArrayLayout):
        return [to_python(element) for element in value]
    return {name: to_python(value[name]) for name, _ in value.shape()}


async def reset(dut, component, **inputs) -> np.random.Generator:
    """Starts the clock and holds reset for two cycles. Every input port of `component` is
    driven to 0 (streams idle; a previous test may have left a beat offered) unless `inputs`
    names a value for it (config ports). Returns the test's generator, seeded by cocotb's seed."""
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    for name, flow in ports(component).items():
        if flow == wiring.In:
            getattr(dut, name).value = inputs.pop(name, 0)
    assert not inputs, f"{sorted(inputs)} are not input ports"
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    return np.random.default_rng(cocotb.RANDOM_SEED)


class Source:
    """Offers `items` (values for `layout.const`) in order on the DUT's stream `name`.

    Idles a cycle with probability `bubbles`, and holds item k back while `gate(k)` is false
    (a dependency on another stream). `cycles[k]` is the cycle item k was accepted in.
    """

    def __init__(self, dut, name, layout, items, *, rng, bubbles=0.0, gate=None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.layout, self.items, self.rng = layout, items, rng
        self.bubbles, self.gate = bubbles, gate
        self.cycles: list[int] = []
        self._offering = False

    @property
    def accepted(self) -> int:
        return len(self.cycles)

    @property
    def offered(self) -> int:
        """Items offered so far: the accepted ones and the one on the stream now."""
        return self.accepted + self._offering

    def drive(self) -> None:
        if self._offering:          # a stream beat stays offered until it is taken
            return
        k = self.accepted
        self._offering = (k < len(self.items) and self.rng.random() >= self.bubbles
                          and (self.gate is None or self.gate(k)))
        if self._offering:
            self.payload.value = self.layout.const(self.items[k]).as_bits()
        self.valid.value = int(self._offering)

    def sample(self, cycle: int) -> None:
        if self._offering and self.ready.value:
            self.cycles.append(cycle)
            self._offering = False


class Sink:
    """Takes beats from the DUT's stream `name`, refusing with probability `stalls` per cycle.

    `beats[k]` is the k-th payload (see `to_python`), `cycles[k]` the cycle it was taken in.
    """

    def __init__(self, dut, name, layout, *, rng, stalls=0.0):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.layout, self.rng, self.stalls = layout, rng, stalls
        self.beats: list = []
        self.cycles: list[int] = []
        self._ready = False

    def drive(self) -> None:
        self._ready = self.rng.random() >= self.stalls
        self.ready.value = int(self._ready)

    def sample(self, cycle: int) -> None:
        if self._ready and self.valid.value:
            bits = self.payload.value.to_unsigned()
            self.beats.append(to_python(self.layout.from_bits(bits)))
            self.cycles.append(cycle)


async def run(dut, sources, sink, beats: int, *, max_cycles: int, monitor=None) -> None:
    """Clocks the streams until `sink` holds `beats` beats.

    `monitor(cycle)`, if given, runs every cycle in ReadOnly (it may read, not write).
    """
    for cycle in range(max_cycles):
        await FallingEdge(dut.clk)
        for port in (*sources, sink):
            port.drive()
        await ReadOnly()
        for port in (*sources, sink):
            port.sample(cycle)
        if monitor is not None:
            monitor(cycle)
        if len(sink.beats) == beats:
            await FallingEdge(dut.clk)      # leave ReadOnly: the caller may write next
            return
    raise AssertionError(f"{len(sink.beats)} of {beats} beats after {max_cycles} cycles")


def expect(sink: Sink, expected: list) -> None:
    """Every beat the sink took equals the expected payload (nested dicts/lists of ints)."""
    assert len(sink.beats) == len(expected), f"{len(sink.beats)} beats, {len(expected)} expected"
    for k, (got, want) in enumerate(zip(sink.beats, expected)):
        assert got == want, f"beat {k}:\n got      {got}\n expected {want}"


def expect_full_rate(source: Source, sink: Sink, latency: int) -> None:
    """At full rate the source's beats went in back to back and each came out `latency`
    cycles later."""
    gaps = np.flatnonzero(np.diff(source.cycles) != 1)
    assert not gaps.size, f"input bubbles after beats {gaps.tolist()}"
    waits = {out - into for out, into in zip(sink.cycles, source.cycles)}
    assert waits == {latency}, f"latencies {waits}, documented {latency}"


async def pipe(dut, component, items, expected, *, rng, bubbles=0.0, stalls=0.0):
    """Streams `items` through a unit with one input stream `i` and one output stream `o` and
    checks the outputs against `expected`; returns the source and the sink."""
    source = Source(dut, "i", payload_layout(component, "i"), items, rng=rng, bubbles=bubbles)
    sink = Sink(dut, "o", payload_layout(component, "o"), rng=rng, stalls=stalls)
    await run(dut, [source], sink, len(items), max_cycles=20 * len(items) + 100)
    expect(sink, expected)
    return source, sink


async def pipe_requant(dut, component, rng, s, m, b, u, *, bubbles=0.0, stalls=0.0):
    """`pipe` for requantizer units: beats (s, m, b) with random tags, expecting (u, tag)."""
    tags = rng.integers(0, 32, len(s)).tolist()
    items = [{"s": s[k].tolist(), "m": m[k].tolist(), "b": b[k].tolist(), "tag": tags[k]}
             for k in range(len(s))]
    expected = [{"u": u[k].tolist(), "tag": tags[k]} for k in range(len(s))]
    return await pipe(dut, component, items, expected, rng=rng, bubbles=bubbles, stalls=stalls)
