"""Run control and performance counters (ARCHITECTURE §6): CYCLES from START to the last output
written, BUSY the cycles the array accepted a vector, STALL the rest."""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.controller import COUNT_BITS
from hw.host import ADDR_BITS


class RunCounters(wiring.Component):
    """`busy` from `start` until the pass's `total` output words were `written`, then `done`."""

    def __init__(self):
        super().__init__({
            "start": In(1), "accepted": In(1), "written": In(1),
            "total": In(ADDR_BITS),             # the descriptor's OUT_WORDS
            "busy": Out(1), "done": Out(1),
            "cycles": Out(COUNT_BITS), "useful": Out(COUNT_BITS), "stalls": Out(COUNT_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        written = Signal(COUNT_BITS)
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(self.accepted):
                m.d.sync += self.useful.eq(self.useful + 1)
            with m.Else():
                m.d.sync += self.stalls.eq(self.stalls + 1)
            with m.If(self.written):
                m.d.sync += written.eq(written + 1)
                with m.If(written + 1 == self.total):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), self.done.eq(0), self.cycles.eq(0), self.useful.eq(0),
                         self.stalls.eq(0), written.eq(0)]
        return m
