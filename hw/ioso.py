"""IOSO unit (ARCHITECTURE §2, §6): the K-tile's input-channel scale, by a shift and an add.

A K-tile lies in one channel group (§4), so one code s in {-1, 0, +1} scales the whole partial
sum vector: q = (p << n) + s*p = p * (2^n + s), exactly, with no multiplier: s only selects the
addend +p, 0 or -p (the non-code -2 also selects 0).

Built with `params.isg` False the unit is the engine "without IOSO": a wire, q = p, `s` ignored
and latency 0, so comparing the two builds measures what the unit costs in area and in cycles.
"""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.pipeline import delay, stall_control
from hw.params import EngineParams


class IosoUnit(wiring.Component):
    """i: {p: C x signed(psum_width), s: signed(2), tag} -> o: {q: C x signed(ioso_width), tag}.

    One register stage (`latency` = 1), one vector per cycle, `tag` carried unchanged; a wire
    (`latency` = 0) when built without ISG.
    """

    def __init__(self, params: EngineParams, tag_layout):
        self.params = params
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "p": data.ArrayLayout(signed(params.psum_width), params.cols),
                "s": signed(2),
                "tag": tag_layout,
            }))),
            "o": Out(stream.Signature(data.StructLayout({
                "q": data.ArrayLayout(signed(params.ioso_width), params.cols),
                "tag": tag_layout,
            }))),
        })

    @property
    def latency(self) -> int:
        return 1 if self.params.isg else 0

    def _scale(self, p, s):
        return (p << self.params.isg_shift) + Mux(s[0], Mux(s[1], -p, p), 0)

    def elaborate(self, platform):
        m = Module()
        if not self.params.isg:
            m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready),
                         self.o.p.tag.eq(self.i.p.tag)]
            for c in range(self.params.cols):
                m.d.comb += self.o.p.q[c].eq(self.i.p.p[c])
            return m
        en = stall_control(m, self.i, self.o, self.latency)
        q = Signal(self.o.p.shape())
        m.d.comb += q.tag.eq(self.i.p.tag)
        for c in range(self.params.cols):
            m.d.comb += q.q[c].eq(self._scale(self.i.p.p[c], self.i.p.s))
        m.d.comb += self.o.p.eq(delay(m, en, q, self.latency, name="q"))
        return m
