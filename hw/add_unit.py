"""The residual-add path (ARCHITECTURE §5, §6): a sequencer that reads both inputs' ACT words
and a unit that forms the BN unit's lane inputs from them, so that the BN and activation units
compute t = (x1 - z1)*M1 + (x2 - z2)*M2, its rounding, the output zero-point and the clamp.
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.controller import COUNT_BITS
from hw.host import LANE_BITS, WORD_BITS, descriptor_layout
from hw.pipeline import delay, stall_control


def add_input_layout(params, tag_layout) -> data.StructLayout:
    codes = data.ArrayLayout(unsigned(params.a_bits), params.cols)
    return data.StructLayout({"x1": codes, "x2": codes, "tag": tag_layout})


class AddFeed(wiring.Component):
    """Reads item i = pixel * CT + ct of both inputs: x1 from ACT word i, x2 from word T + i
    (T = H*W*CT, the first input's words), one word per cycle, so an item every two cycles;
    item i is OUT word i (NT = CT). Reads stall with the output, as the activation feed's.
    `latency`: the output register behind the second word's read."""

    latency = 1

    def __init__(self, params, depths, tag_layout):
        self._p = params
        super().__init__({
            "start": In(1), "desc": In(descriptor_layout),
            "mem_addr": Out(range(depths.act)), "mem_en": Out(1), "mem_data": In(WORD_BITS),
            "o": Out(stream.Signature(add_input_layout(params, tag_layout))),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.desc
        total = d.act_words
        item, running, second = Signal(COUNT_BITS), Signal(), Signal()
        pending, x1 = Signal(), Signal(WORD_BITS)       # an item whose x2 word arrives now
        valid, held = Signal(), Signal(self.o.payload.shape())
        go = ~valid | self.o.ready
        m.d.comb += [self.mem_addr.eq(Mux(second, total + item, item)), self.mem_en.eq(go),
                     self.o.valid.eq(valid), self.o.payload.eq(held)]
        codes = lambda word, r: word.word_select(r, LANE_BITS)[:self._p.a_bits]  # noqa: E731
        with m.If(go):
            m.d.sync += valid.eq(pending)
            with m.If(pending):
                m.d.sync += [held.tag.out.eq(item - 1), pending.eq(0)]
                m.d.sync += [held.x1[r].eq(codes(x1, r)) for r in range(self._p.cols)]
                m.d.sync += [held.x2[r].eq(codes(self.mem_data, r)) for r in range(self._p.cols)]
            with m.If(running):
                m.d.sync += second.eq(~second)
                with m.If(second):
                    m.d.sync += [x1.eq(self.mem_data), pending.eq(1), item.eq(item + 1),
                                 running.eq(item + 1 != total)]
        with m.If(self.start):
            m.d.sync += [running.eq(1), item.eq(0), second.eq(0), pending.eq(0), valid.eq(0)]
        return m


class AddUnit(wiring.Component):
    """i: {x1, x2: C codes, tag} -> o: the table stage's {v: C x {s, m, b}, tag} with
    s = x1 - z1, m = M1, b = (x2 - z2)*M2; config z1, z2, M1, M2. One stage (`latency` = 1):
    C multipliers of (a_bits + 1) x mult_width bits."""

    latency = 1

    def __init__(self, params, lane_layout, tag_layout):
        self._p = params
        super().__init__({
            "i": In(stream.Signature(add_input_layout(params, tag_layout))),
            "o": Out(stream.Signature(data.StructLayout({
                "v": data.ArrayLayout(lane_layout, params.cols), "tag": tag_layout}))),
            "z1": In(unsigned(params.a_bits)), "z2": In(unsigned(params.a_bits)),
            "m1": In(signed(params.mult_width)), "m2": In(signed(params.mult_width)),
        })

    def elaborate(self, platform):
        m = Module()
        en = stall_control(m, self.i, self.o, self.latency)
        diff = signed(self._p.a_bits + 1)
        out = Signal(self.o.payload.shape())
        m.d.comb += out.tag.eq(self.i.payload.tag)
        for k in range(self._p.cols):
            d1, d2 = Signal(diff, name=f"d1_{k}"), Signal(diff, name=f"d2_{k}")
            m.d.comb += [d1.eq(self.i.payload.x1[k] - self.z1), d2.eq(self.i.payload.x2[k] - self.z2),
                         out.v[k].s.eq(d1), out.v[k].m.eq(self.m1), out.v[k].b.eq(d2 * self.m2)]
        m.d.comb += self.o.payload.eq(delay(m, en, out, self.latency, name="add"))
        return m
