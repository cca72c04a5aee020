"""The table stage (ARCHITECTURE §6): M_k and B_k of every output channel in C lane memories,
read by the N-tile index that travels with the accumulator's sums, one register stage."""

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.host import ADDR_BITS, TABLE_B, TABLE_M, WORD_BITS

table_write_layout = data.StructLayout({"en": 1, "addr": ADDR_BITS, "data": WORD_BITS})


class TableStage(wiring.Component):
    """Sums in, (S, M, B) per lane out, stalling with its output.

    A TABLE word `k` holds channel k's entry (`requant.table_entry`, packed as TABLE_M and
    TABLE_B): lane k mod C, row k div C. `requant` is the BN (or FP16) unit the stage feeds,
    whose lane inputs s, m, b set the output's layout.
    """

    latency = 1

    def __init__(self, params, channels: int, sum_layout, in_tag, out_tag, requant):
        self._cols, self._depth = params.cols, channels // params.cols
        self._entry = requant.table_entry(params)
        members = requant.i.payload.shape().members
        lane = data.StructLayout({name: members[name].elem_shape for name in ("s", "m", "b")})
        super().__init__({
            "write": In(table_write_layout),
            "i": In(stream.Signature(data.StructLayout({"s": sum_layout, "tag": in_tag}))),
            "o": Out(stream.Signature(data.StructLayout({"v": data.ArrayLayout(lane, params.cols),
                                                         "tag": out_tag}))),
        })

    def elaborate(self, platform):
        m = Module()
        lane_bits = (self._cols - 1).bit_length()
        valid, s, out = Signal(), Signal(self.i.payload.s.shape()), Signal(self.o.payload.tag.out.shape())
        advance = ~valid | self.o.ready
        m.d.comb += [self.i.ready.eq(advance), self.o.valid.eq(valid), self.o.payload.tag.out.eq(out)]
        with m.If(advance):
            m.d.sync += [valid.eq(self.i.valid), s.eq(self.i.payload.s), out.eq(self.i.payload.tag.out)]
        w = self.write
        for lane in range(self._cols):
            m.submodules[f"table_{lane}"] = mem = Memory(shape=self._entry, depth=self._depth, init=[])
            wr, rd = mem.write_port(), mem.read_port()
            m.d.comb += [
                wr.addr.eq(w.addr >> lane_bits), wr.data.m.eq(w.data[TABLE_M]),
                wr.data.b.eq(w.data[TABLE_B.start:TABLE_B.start + len(wr.data.b)]),
                wr.en.eq(w.en & (w.addr[:lane_bits] == lane)),
                rd.addr.eq(self.i.payload.tag.nt), rd.en.eq(advance),
                self.o.payload.v[lane].s.eq(s[lane]), self.o.payload.v[lane].m.eq(rd.data.m),
                self.o.payload.v[lane].b.eq(rd.data.b),
            ]
        return m
