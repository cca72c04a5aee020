"""The IOSO layer engine: scratchpads, sequencers, array, IOSO unit, accumulator, BN and
activation units, host command stream and performance counters (ARCHITECTURE §6).
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.accumulator import Accumulator
from hw.array import SystolicArray
from hw.controller import COUNT_BITS, ActivationFeed, WeightFeed, array_tag_layout
from hw.fp16 import Fp16Scale
from hw.host import LANE_BITS, TABLE_B, TABLE_M, WORD_BITS, Csr, Depths, Space, command_layout, descriptor_layout
from hw.ioso import IosoUnit
from hw.lanes import Narrow, Widen
from hw.params import EngineParams
from hw.postproc import ActUnit, BnUnit

# The post-accumulator scaling unit of each `EngineParams.requant`.
REQUANT_UNITS = {"int": BnUnit, "fp16": Fp16Scale}
TABLE_LATENCY = 1       # the table stage between accumulator and BN unit: one register


def _connect(m, src, dst, **fields):
    """src stream -> dst stream; dst payload fields from `fields` (name -> value)."""
    m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready)]
    for name, value in fields.items():
        m.d.comb += getattr(dst.payload, name).eq(value)


class Engine(wiring.Component):
    """Runs one conv/FC layer pass from the descriptor and scratchpads loaded over `cmd`."""

    def __init__(self, params: EngineParams = EngineParams(), depths: Depths = Depths()):
        self.params, self.depths = params, depths
        super().__init__({
            "cmd": In(stream.Signature(command_layout)),
            "resp": Out(stream.Signature(WORD_BITS)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p, dp = self.params, self.depths
        cols = p.cols

        # ---- scratchpads
        m.submodules.act_mem = act_mem = Memory(shape=WORD_BITS, depth=dp.act, init=[])
        m.submodules.w_mem = w_mem = Memory(shape=WORD_BITS, depth=dp.weight, init=[])
        m.submodules.out_mem = out_mem = Memory(shape=WORD_BITS, depth=dp.out, init=[])
        requant_unit = REQUANT_UNITS[p.requant]
        entry = requant_unit.table_entry(p)
        tables = [Memory(shape=entry, depth=dp.channels // cols, init=[]) for _ in range(cols)]
        for lane, mem in enumerate(tables):
            m.submodules[f"table_{lane}"] = mem
        codes = Signal(2 * dp.tiles)
        desc = Signal(descriptor_layout)

        # ---- control state and counters
        busy, done = Signal(), Signal()
        cycles, useful, stalls = (Signal(COUNT_BITS, name=n) for n in ("cycles", "useful", "stalls"))
        written = Signal(COUNT_BITS)
        start = Signal()

        # ---- host commands: writes and reads while idle; one response per read
        cmd = self.cmd.payload
        resp_valid, resp_from_out = Signal(), Signal()
        csr_value = Signal(WORD_BITS)
        out_rd = out_mem.read_port()
        accept = self.cmd.valid & self.cmd.ready
        m.d.comb += [
            self.cmd.ready.eq(~busy & (~resp_valid | self.resp.ready)),
            self.resp.valid.eq(resp_valid),
            self.resp.payload.eq(Mux(resp_from_out, out_rd.data, csr_value)),
            out_rd.addr.eq(cmd.addr), out_rd.en.eq(accept & ~cmd.write),
            self.done.eq(done),
        ]
        with m.If(self.resp.valid & self.resp.ready):
            m.d.sync += resp_valid.eq(0)
        writes = {Space.ACT: act_mem.write_port(), Space.WEIGHT: w_mem.write_port()}
        for space, port in writes.items():
            m.d.comb += [port.addr.eq(cmd.addr), port.data.eq(cmd.data),
                         port.en.eq(accept & cmd.write & (cmd.space == space))]
        lane_bits = (cols - 1).bit_length()
        for lane, mem in enumerate(tables):
            port = mem.write_port()
            m.d.comb += [port.addr.eq(cmd.addr >> lane_bits), port.data.m.eq(cmd.data[TABLE_M]),
                         port.data.b.eq(cmd.data[TABLE_B.start:TABLE_B.start + len(port.data.b)]),
                         port.en.eq(accept & cmd.write & (cmd.space == Space.TABLE)
                                    & (cmd.addr[:lane_bits] == lane))]
        code_write = accept & cmd.write & (cmd.space == Space.CODE)
        with m.If(accept & cmd.write & (cmd.space == Space.CSR)):
            with m.Switch(cmd.addr):
                with m.Case(Csr.START):
                    m.d.comb += start.eq(1)
                for reg in Csr:
                    if reg.name.lower() in descriptor_layout.members:
                        with m.Case(reg):
                            m.d.sync += getattr(desc, reg.name.lower()).eq(cmd.data)
        with m.If(accept & ~cmd.write):
            m.d.sync += [resp_valid.eq(1), resp_from_out.eq(cmd.space == Space.OUT)]
            with m.Switch(cmd.addr):
                for reg, value in ((Csr.STATUS, done | (busy << 1)), (Csr.CYCLES, cycles),
                                   (Csr.BUSY, useful), (Csr.STALL, stalls)):
                    with m.Case(reg):
                        m.d.sync += csr_value.eq(value)
                with m.Default():
                    m.d.sync += csr_value.eq(0)

        # ---- sequencers
        m.submodules.feed = feed = ActivationFeed(p, dp)
        m.submodules.wfeed = wfeed = WeightFeed(p, dp)
        act_rd, w_rd = act_mem.read_port(), w_mem.read_port()
        kt = desc.kh * desc.kw * desc.ct
        m.d.comb += [
            feed.start.eq(start), feed.desc.eq(desc), feed.codes.eq(codes),
            feed.tiles_loaded.eq(wfeed.tiles_loaded),
            act_rd.addr.eq(feed.mem_addr), act_rd.en.eq(feed.mem_en), feed.mem_data.eq(act_rd.data),
            wfeed.start.eq(start), wfeed.rows_total.eq(desc.nt * kt * p.rows),
            wfeed.swapped.eq(feed.swapped),
            w_rd.addr.eq(wfeed.mem_addr), w_rd.en.eq(wfeed.mem_en), wfeed.mem_data.eq(w_rd.data),
        ]

        # ---- datapath: array -> IOSO -> accumulator -> tables -> BN -> activation -> OUT
        tag = array_tag_layout(dp)
        post_tag = data.StructLayout({"out": range(dp.out), "nt": tag.members["nt"]})
        out_tag = data.StructLayout({"out": range(dp.out)})
        m.submodules.array = array = SystolicArray(p, tag)
        m.submodules.ioso = ioso = IosoUnit(p, tag)
        m.submodules.acc = acc = Accumulator(p, dp.acc, tag, post_tag)
        if ioso.multiplier:     # CODE words tiles.. hold the group scales (hw/ioso.py)
            scale_write = code_write & (cmd.addr >= dp.tiles)
            m.d.comb += [ioso.scale.en.eq(scale_write), ioso.scale.group.eq(cmd.addr - dp.tiles),
                         ioso.scale.value.eq(cmd.data)]
            code_write &= ~scale_write
        with m.If(code_write):
            m.d.sync += codes.word_select(cmd.addr[:max(1, (dp.tiles - 1).bit_length())], 2).eq(cmd.data[:2])
        wiring.connect(m, feed.o, array.i)
        wiring.connect(m, wfeed.o, array.w_load)
        _connect(m, array.o, ioso.i, p=array.o.payload.p, s=array.o.payload.tag.s,
                 tag=array.o.payload.tag)
        _connect(m, ioso.o, acc.i, q=ioso.o.payload.q, tag=ioso.o.payload.tag)

        # table stage: read M, B of the N-tile (one register stage, stalls with its output)
        m.submodules.bn = bn = requant_unit(p, out_tag)
        lane_in = data.StructLayout({name: bn.i.payload.shape().members[name].elem_shape
                                     for name in ("s", "m", "b")})
        staged = stream.Signature(data.StructLayout({"v": data.ArrayLayout(lane_in, cols), "tag": out_tag})).create()
        table_rd = [mem.read_port() for mem in tables]
        t_valid, t_s, t_out = Signal(), Signal(acc.o.payload.s.shape()), Signal(range(dp.out))
        t_advance = ~t_valid | staged.ready
        m.d.comb += [acc.o.ready.eq(t_advance), staged.valid.eq(t_valid), staged.payload.tag.out.eq(t_out)]
        with m.If(t_advance):
            m.d.sync += [t_valid.eq(acc.o.valid), t_s.eq(acc.o.payload.s), t_out.eq(acc.o.payload.tag.out)]
        for lane, port in enumerate(table_rd):
            m.d.comb += [port.addr.eq(acc.o.payload.tag.nt), port.en.eq(t_advance),
                         staged.payload.v[lane].s.eq(t_s[lane]), staged.payload.v[lane].m.eq(port.data.m),
                         staged.payload.v[lane].b.eq(port.data.b)]

        m.submodules.act = act = ActUnit(p, out_tag)
        lanes = p.lanes
        if lanes == cols:
            narrow = staged
        else:
            m.submodules.narrow = narrowing = Narrow(lane_in, cols, lanes, out_tag)
            _connect(m, staged, narrowing.i, v=staged.payload.v, tag=staged.payload.tag)
            narrow = narrowing.o
        _connect(m, narrow, bn.i, tag=narrow.payload.tag)
        for lane in range(lanes):
            m.d.comb += [bn.i.payload.s[lane].eq(narrow.payload.v[lane].s),
                         bn.i.payload.m[lane].eq(narrow.payload.v[lane].m),
                         bn.i.payload.b[lane].eq(narrow.payload.v[lane].b)]
        if p.requant == "int":
            m.d.comb += bn.shift.eq(desc.shift)
        m.d.comb += [act.zero_point.eq(desc.z_out), act.lo.eq(desc.lo), act.hi.eq(desc.hi)]
        _connect(m, bn.o, act.i, u=bn.o.payload.u, tag=bn.o.payload.tag)
        if lanes == cols:
            result = act.o
            codes_out = act.o.payload.y
        else:
            m.submodules.widen = widen = Widen(act.o.payload.y.shape().elem_shape, lanes, cols, out_tag)
            _connect(m, act.o, widen.i, v=act.o.payload.y, tag=act.o.payload.tag)
            result, codes_out = widen.o, widen.o.payload.v
        out_wr = out_mem.write_port()
        m.d.comb += [result.ready.eq(1), out_wr.addr.eq(result.payload.tag.out),
                     out_wr.en.eq(result.valid)]
        for lane in range(cols):
            m.d.comb += out_wr.data.word_select(lane, LANE_BITS).eq(codes_out[lane])

        # ---- run control and performance counters
        total = desc.ho * desc.wo * desc.nt
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(array.i.valid & array.i.ready):
                m.d.sync += useful.eq(useful + 1)
            with m.Else():
                m.d.sync += stalls.eq(stalls + 1)
            with m.If(result.valid):
                m.d.sync += written.eq(written + 1)
                with m.If(written + 1 == total):
                    m.d.sync += [busy.eq(0), done.eq(1)]
        with m.If(start):
            m.d.sync += [busy.eq(1), done.eq(0), cycles.eq(0), useful.eq(0), stalls.eq(0), written.eq(0)]
        return m
