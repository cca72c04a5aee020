"""Accumulator memory: S[m] += q for every K-tile (or the larger of the two in max mode), S out
on the layer's last K-tile (§6)."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


class Accumulator(wiring.Component):
    """One C-lane row per output pixel `tag.m`.

    The first K-tile overwrites, later ones add (with `maximum`, a static config, keep the
    larger: a max pool); the last one emits the result instead of writing it back. The read port is transparent to the write port, so a pixel read in the cycle its
    previous sum is written (a one-pixel layer such as FC) sees the new sum. Latency 1.
    """

    latency = 1

    def __init__(self, params, depth: int, tag_layout, out_tag_layout):
        self._depth, self._cols = depth, params.cols
        self._row = data.ArrayLayout(signed(params.acc_width), params.cols)
        self._tag = tag_layout
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "q": data.ArrayLayout(signed(params.ioso_width), params.cols), "tag": tag_layout}))),
            "o": Out(stream.Signature(data.StructLayout({"s": self._row, "tag": out_tag_layout}))),
            "maximum": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self._row, depth=self._depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,))

        held = Signal(self.i.payload.shape())       # the item whose sum is being formed
        valid = Signal()
        advance = ~valid | ~held.tag.last | self.o.ready
        m.d.comb += [self.i.ready.eq(advance), rd.addr.eq(self.i.payload.tag.m), rd.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [valid.eq(self.i.valid), held.eq(self.i.payload)]

        total = Signal(self._row)
        for c in range(self._cols):
            old, new = rd.data[c], held.q[c]
            keep = self.maximum & (old > new)
            m.d.comb += total[c].eq(Mux(held.tag.first, new, Mux(keep, old, Mux(self.maximum, new, old + new))))
        m.d.comb += [
            wr.addr.eq(held.tag.m), wr.data.eq(total), wr.en.eq(valid & ~held.tag.last),
            self.o.valid.eq(valid & held.tag.last), self.o.payload.s.eq(total),
        ]
        for name in self.o.payload.tag.shape().members:
            m.d.comb += getattr(self.o.payload.tag, name).eq(getattr(held.tag, name))
        return m
