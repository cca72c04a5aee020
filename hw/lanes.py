"""Width converters between the array's C lanes and the post-processing's L lanes (§6).

With L < C the post-processing takes C/L cycles per pixel and backpressures the array; with
L = C (the default build) the converters are not instantiated.
"""

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


def _beats(wide: int, narrow: int) -> int:
    if wide % narrow:
        raise ValueError(f"{narrow} lanes do not divide {wide}")
    return wide // narrow


class Narrow(wiring.Component):
    """One vector of `wide` elements out as wide/narrow beats of `narrow` elements, tag on each."""

    def __init__(self, element, wide: int, narrow: int, tag_layout):
        self._beats, self._narrow = _beats(wide, narrow), narrow
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"v": data.ArrayLayout(element, wide), "tag": tag_layout}))),
            "o": Out(stream.Signature(data.StructLayout({"v": data.ArrayLayout(element, narrow), "tag": tag_layout}))),
        })

    def elaborate(self, platform):
        m = Module()
        beat = Signal(range(self._beats))
        last = beat == self._beats - 1
        m.d.comb += [self.o.valid.eq(self.i.valid), self.o.payload.tag.eq(self.i.payload.tag),
                     self.i.ready.eq(self.o.ready & last)]
        with m.Switch(beat):
            for b in range(self._beats):
                with m.Case(b):
                    for lane in range(self._narrow):
                        m.d.comb += self.o.payload.v[lane].eq(self.i.payload.v[b * self._narrow + lane])
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += beat.eq(0 if self._beats == 1 else beat + 1)
            with m.If(last):
                m.d.sync += beat.eq(0)
        return m


class Widen(wiring.Component):
    """wide/narrow beats of `narrow` elements back into one vector; the last beat's tag. Latency 1."""

    latency = 1

    def __init__(self, element, narrow: int, wide: int, tag_layout):
        self._beats, self._narrow = _beats(wide, narrow), narrow
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"v": data.ArrayLayout(element, narrow), "tag": tag_layout}))),
            "o": Out(stream.Signature(data.StructLayout({"v": data.ArrayLayout(element, wide), "tag": tag_layout}))),
        })

    def elaborate(self, platform):
        m = Module()
        beat = Signal(range(self._beats))
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.Switch(beat):
                for b in range(self._beats):
                    with m.Case(b):
                        for lane in range(self._narrow):
                            m.d.sync += self.o.payload.v[b * self._narrow + lane].eq(self.i.payload.v[lane])
            with m.If(beat == self._beats - 1):
                m.d.sync += [beat.eq(0), self.o.valid.eq(1), self.o.payload.tag.eq(self.i.payload.tag)]
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
        return m
