"""The IOSO layer engine (ARCHITECTURE §6): scratchpads, host port, sequencers, array, IOSO
unit, accumulator, table stage, add path, BN and activation units, lane converters, run counters.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.accumulator import Accumulator
from hw.add_unit import AddFeed, AddUnit
from hw.array import SystolicArray
from hw.controller import ActivationFeed, WeightFeed, array_tag_layout
from hw.counters import RunCounters
from hw.depthwise import DepthwiseUnit, WindowFeed
from hw.fp16 import Fp16Scale
from hw.host import LANE_BITS, WORD_BITS, Depths, Mode, Space, command_layout
from hw.host_port import HostPort
from hw.ioso import IosoUnit
from hw.lanes import Narrow, Widen
from hw.params import EngineParams
from hw.postproc import ActUnit, BnUnit
from hw.tables import TableStage

# The post-accumulator scaling unit of each `EngineParams.requant`.
REQUANT_UNITS = {"int": BnUnit, "fp16": Fp16Scale}


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
        m.submodules.act_mem = act_mem = Memory(shape=WORD_BITS, depth=dp.act, init=[])
        m.submodules.w_mem = w_mem = Memory(shape=WORD_BITS, depth=dp.weight, init=[])
        m.submodules.out_mem = out_mem = Memory(shape=WORD_BITS, depth=dp.out, init=[])
        m.submodules.host = host = HostPort()
        m.submodules.counters = counters = RunCounters()
        wiring.connect(m, wiring.flipped(self.cmd), host.cmd)
        wiring.connect(m, host.resp, wiring.flipped(self.resp))
        out_rd = out_mem.read_port()
        m.d.comb += [out_rd.addr.eq(host.out_addr), out_rd.en.eq(host.out_en), host.out_data.eq(out_rd.data),
                     host.busy.eq(counters.busy), host.done.eq(counters.done), self.done.eq(counters.done),
                     host.cycles.eq(counters.cycles), host.useful.eq(counters.useful),
                     host.stalls.eq(counters.stalls), counters.start.eq(host.start)]
        write, desc = host.write, host.desc
        to = lambda space: write.en & (write.space == space)  # noqa: E731
        for mem, space in ((act_mem, Space.ACT), (w_mem, Space.WEIGHT)):
            port = mem.write_port()
            m.d.comb += [port.addr.eq(write.addr), port.data.eq(write.data), port.en.eq(to(space))]

        # ---- sequencers (the add feed in ADD mode), and the ISG code of each K-tile (CODE space)
        m.submodules.feed = feed = ActivationFeed(p, dp)
        m.submodules.wfeed = wfeed = WeightFeed(p, dp)
        out_tag = data.StructLayout({"out": range(dp.out)})
        m.submodules.add_feed = add_feed = AddFeed(p, dp, out_tag)
        codes = Signal(2 * dp.tiles)
        act_rd, w_rd = act_mem.read_port(), w_mem.read_port()
        post_tag = data.StructLayout({"out": range(dp.out), "nt": range(max(2, dp.channels))})
        m.submodules.window = window = WindowFeed(p, dp, post_tag)
        adding, depthwise = desc.mode == Mode.ADD, desc.mode == Mode.DW
        on_array = ~adding & ~depthwise
        m.d.comb += [
            feed.start.eq(host.start & on_array), feed.desc.eq(desc), feed.codes.eq(codes),
            feed.tiles_loaded.eq(wfeed.tiles_loaded),
            add_feed.start.eq(host.start & adding), add_feed.desc.eq(desc),
            window.start.eq(host.start & depthwise), window.desc.eq(desc),
            act_rd.addr.eq(Mux(adding, add_feed.mem_addr, Mux(depthwise, window.act_addr, feed.mem_addr))),
            act_rd.en.eq(Mux(adding, add_feed.mem_en, Mux(depthwise, window.act_en, feed.mem_en))),
            feed.mem_data.eq(act_rd.data), add_feed.mem_data.eq(act_rd.data), window.act_data.eq(act_rd.data),
            wfeed.start.eq(host.start & on_array), wfeed.rows_total.eq(desc.weight_rows),
            wfeed.swapped.eq(feed.swapped),
            w_rd.addr.eq(Mux(depthwise, window.w_addr, wfeed.mem_addr)),
            w_rd.en.eq(Mux(depthwise, window.w_en, wfeed.mem_en)),
            wfeed.mem_data.eq(w_rd.data), window.w_data.eq(w_rd.data),
        ]

        # ---- datapath: array -> IOSO -> accumulator -> tables -> BN -> activation -> OUT
        tag = array_tag_layout(dp)
        m.submodules.array = array = SystolicArray(p, tag)
        m.submodules.ioso = ioso = IosoUnit(p, tag)
        m.submodules.acc = acc = Accumulator(p, dp.acc, tag, post_tag)
        m.d.comb += acc.maximum.eq(desc.mode == Mode.MAX)
        code_write = to(Space.CODE)
        if ioso.multiplier:     # CODE words tiles.. hold the group scales (hw/ioso.py)
            scale_write = code_write & (write.addr >= dp.tiles)
            m.d.comb += [ioso.scale.en.eq(scale_write), ioso.scale.group.eq(write.addr - dp.tiles),
                         ioso.scale.value.eq(write.data)]
            code_write &= ~scale_write
        with m.If(code_write):
            m.d.sync += codes.word_select(write.addr[:max(1, (dp.tiles - 1).bit_length())], 2).eq(write.data[:2])
        wiring.connect(m, feed.o, array.i)
        wiring.connect(m, wfeed.o, array.w_load)
        _connect(m, array.o, ioso.i, p=array.o.payload.p, s=array.o.payload.tag.s,
                 tag=array.o.payload.tag)
        _connect(m, ioso.o, acc.i, q=ioso.o.payload.q, tag=ioso.o.payload.tag)
        m.submodules.bn = bn = REQUANT_UNITS[p.requant](p, out_tag)
        m.submodules.tables = tables = TableStage(p, dp.channels, acc.o.payload.s.shape(), post_tag,
                                                  out_tag, bn)
        m.d.comb += [tables.write.en.eq(to(Space.TABLE)), tables.write.addr.eq(write.addr),
                     tables.write.data.eq(write.data)]
        # accumulator (array passes) or depthwise unit (DW): one pass uses one of them
        m.submodules.dw = dw = DepthwiseUnit(p, post_tag)
        wiring.connect(m, window.o, dw.i)
        m.d.comb += [dw.weights.eq(window.weights), tables.i.valid.eq(acc.o.valid | dw.o.valid),
                     acc.o.ready.eq(tables.i.ready), dw.o.ready.eq(tables.i.ready),
                     tables.i.payload.eq(Mux(dw.o.valid, dw.o.payload, acc.o.payload))]
        lane = tables.o.payload.v.shape().elem_shape
        m.submodules.add = add = AddUnit(p, lane, out_tag)
        wiring.connect(m, add_feed.o, add.i)
        m.d.comb += [add.z1.eq(desc.z_in), add.z2.eq(desc.z_in2), add.m1.eq(desc.m1), add.m2.eq(desc.m2)]
        # tables (conv, pools) or add unit (ADD): one pass uses one of them, the other is idle
        lanes_in = stream.Signature(tables.o.payload.shape()).create()
        m.d.comb += [lanes_in.valid.eq(tables.o.valid | add.o.valid), tables.o.ready.eq(lanes_in.ready),
                     add.o.ready.eq(lanes_in.ready),
                     lanes_in.payload.eq(Mux(add.o.valid, add.o.payload, tables.o.payload))]
        m.submodules.act = act = ActUnit(p, out_tag)
        narrow = lanes_in
        if p.lanes < cols:
            m.submodules.narrow = narrowing = Narrow(lane, cols, p.lanes, out_tag)
            _connect(m, lanes_in, narrowing.i, v=lanes_in.payload.v, tag=lanes_in.payload.tag)
            narrow = narrowing.o
        _connect(m, narrow, bn.i, tag=narrow.payload.tag)
        for lane in range(p.lanes):
            for name in ("s", "m", "b"):
                m.d.comb += getattr(bn.i.payload, name)[lane].eq(getattr(narrow.payload.v[lane], name))
        if p.requant == "int":
            m.d.comb += bn.shift.eq(desc.shift)
        m.d.comb += [act.zero_point.eq(desc.z_out), act.lo.eq(desc.lo), act.hi.eq(desc.hi)]
        _connect(m, bn.o, act.i, u=bn.o.payload.u, tag=bn.o.payload.tag)
        result, codes_out = act.o, act.o.payload.y
        if p.lanes < cols:
            m.submodules.widen = widen = Widen(act.o.payload.y.shape().elem_shape, p.lanes, cols, out_tag)
            _connect(m, act.o, widen.i, v=act.o.payload.y, tag=act.o.payload.tag)
            result, codes_out = widen.o, widen.o.payload.v
        out_wr = out_mem.write_port()
        m.d.comb += [result.ready.eq(1), out_wr.addr.eq(result.payload.tag.out), out_wr.en.eq(result.valid),
                     counters.accepted.eq((array.i.valid & array.i.ready) | (add.i.valid & add.i.ready)
                                          | window.steps),
                     counters.written.eq(result.valid),
                     counters.total.eq(desc.out_words)]
        for lane in range(cols):
            m.d.comb += out_wr.data.word_select(lane, LANE_BITS).eq(codes_out[lane])
        return m
