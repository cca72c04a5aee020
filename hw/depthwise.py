"""The depthwise path beside the array (ARCHITECTURE §6, DW mode): a line-buffer window feed
and a 16-lane 3x3 MAC unit, so that a 3x3 depthwise conv reads every input word once and makes
one output pixel of 16 channels per cycle (144 MACs), where the array's block-diagonal tiles
make 16.

The feed walks each channel tile's padded input in raster order, rows r < Hp = (Ho-1)*s + 3 and
columns c < Wp = (Wo-1)*s + 3, one step per cycle: it reads ACT word (ih*W + iw)*CT + ct (the
zero-point where the step is padding), pushes the column (row r-2 and r-1 from two line buffers,
row r from ACT) into a 3x3 window of words, and offers the window whenever it is an output
window (r, c >= 2, and r-2, c-2 multiples of the stride). Before a tile it reads the tile's nine
weight words (WEIGHT row ct*9 + kh*3 + kw, lane k: channel ct*16 + k) into registers.
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.host import ADDR_BITS, LANE_BITS, WORD_BITS, descriptor_layout
from hw.pipeline import delay, stall_control

KERNEL = 3
TAPS = KERNEL * KERNEL


def window_layout(params, tag_layout) -> data.StructLayout:
    codes = data.ArrayLayout(unsigned(params.a_bits), params.cols)
    return data.StructLayout({"x": data.ArrayLayout(codes, TAPS), "tag": tag_layout})


def weights_layout(params) -> data.ArrayLayout:
    return data.ArrayLayout(data.ArrayLayout(signed(params.w_bits), params.cols), TAPS)


class WindowFeed(wiring.Component):
    """Windows of a DW pass. `latency`: cycles from a step's ACT read to the window register
    holding it (one read stage, one shift). The feed does not stall: the engine's post-processing
    takes a window per cycle when it has a lane per column (the driver's condition for DW mode).
    """

    latency = 2
    load_cycles = TAPS     # weight reads before a tile's first step

    def __init__(self, params, depths, tag_layout):
        self._p, self._line = params, depths.line
        super().__init__({
            "start": In(1), "desc": In(descriptor_layout),
            "act_addr": Out(range(depths.act)), "act_en": Out(1), "act_data": In(WORD_BITS),
            "w_addr": Out(range(depths.weight)), "w_en": Out(1), "w_data": In(WORD_BITS),
            "weights": Out(weights_layout(params)),
            "o": Out(stream.Signature(window_layout(params, tag_layout))),
            "steps": Out(1),
        })

    def _codes(self, word):
        return [word.word_select(k, LANE_BITS)[:self._p.a_bits] for k in range(self._p.cols)]

    def elaborate(self, platform):
        m = Module()
        d, cols = self.desc, self._p.cols
        word = data.ArrayLayout(unsigned(self._p.a_bits), cols)
        m.submodules.older = older = Memory(shape=word, depth=self._line, init=[])
        m.submodules.newer = newer = Memory(shape=word, depth=self._line, init=[])
        older_wr, newer_wr = older.write_port(), newer.write_port()
        older_rd, newer_rd = older.read_port(transparent_for=(older_wr,)), newer.read_port(transparent_for=(newer_wr,))

        ct, r, c, load = Signal(16), Signal(16), Signal(16), Signal(range(TAPS + 1))
        row_phase, col_phase = Signal(16), Signal(16)
        running, loading = Signal(), Signal()
        # step counters in place of products (§6): the step's input pixel (ih, iw) and ACT word,
        # the tile's first WEIGHT word and the OUT word of the next output window
        ih, iw = Signal(signed(20)), Signal(signed(20))
        act_word, row_word, tile_word = (Signal(ADDR_BITS, name=n) for n in ("act_word", "row_word", "tile_word"))
        w_word, out = Signal.like(self.w_addr), Signal.like(self.o.payload.tag.out)

        # ---- weights: nine reads per tile, each written one cycle later
        loaded, load_tap = Signal(), Signal(range(TAPS))
        m.d.comb += [self.w_addr.eq(w_word + load), self.w_en.eq(loading)]
        m.d.sync += [loaded.eq(loading), load_tap.eq(load)]
        with m.If(loaded):
            for t in range(TAPS):
                with m.If(load_tap == t):
                    m.d.sync += [self.weights[t][k].eq(self.w_data.word_select(k, LANE_BITS)[:self._p.w_bits])
                                 for k in range(cols)]
        with m.If(loading):
            m.d.sync += load.eq(load + 1)
            with m.If(load == TAPS - 1):
                m.d.sync += [loading.eq(0), load.eq(0)]

        # ---- one raster step per cycle while running and not loading
        step = running & ~loading
        pad = (ih < 0) | (ih >= d.h) | (iw < 0) | (iw >= d.w)
        emit = (r >= KERNEL - 1) & (c >= KERNEL - 1) & (row_phase == 0) & (col_phase == 0)
        m.d.comb += [self.act_addr.eq(Mux(pad, 0, act_word)), self.act_en.eq(step),
                     older_rd.addr.eq(c), newer_rd.addr.eq(c), self.steps.eq(step)]
        last_c, last_r, last_ct = c == d.cols_walked - 1, r == d.rows_walked - 1, ct == d.ct - 1
        with m.If(step):
            m.d.sync += [c.eq(Mux(last_c, 0, c + 1)), iw.eq(iw + 1), act_word.eq(act_word + d.ct)]
            with m.If(c >= KERNEL - 1):
                m.d.sync += col_phase.eq(Mux(col_phase == d.stride - 1, 0, col_phase + 1))
            with m.If(emit):
                m.d.sync += out.eq(out + d.ct)
            with m.If(last_c):
                m.d.sync += [r.eq(Mux(last_r, 0, r + 1)), col_phase.eq(0), ih.eq(ih + 1),
                             iw.eq(-d.pad_left), row_word.eq(row_word + d.row_words),
                             act_word.eq(row_word + d.row_words)]
                with m.If(r >= KERNEL - 1):
                    m.d.sync += row_phase.eq(Mux(row_phase == d.stride - 1, 0, row_phase + 1))
                with m.If(last_r):
                    m.d.sync += [ct.eq(ct + 1), row_phase.eq(0), loading.eq(~last_ct), running.eq(~last_ct),
                                 ih.eq(-d.pad_top), tile_word.eq(tile_word + 1), row_word.eq(tile_word + 1),
                                 act_word.eq(tile_word + 1), w_word.eq(w_word + TAPS), out.eq(ct + 1)]

        # ---- stage 1: the step's word and line-buffer words arrive; shift the column in
        s1, s1_pad, s1_emit, s1_c = Signal(), Signal(), Signal(), Signal(16)
        s1_tag = Signal(self.o.payload.tag.shape())
        m.d.sync += [s1.eq(step), s1_pad.eq(pad), s1_emit.eq(step & emit), s1_c.eq(c),
                     s1_tag.out.eq(out), s1_tag.nt.eq(ct)]
        new = Signal(word)
        for k, code in enumerate(self._codes(self.act_data)):
            m.d.comb += new[k].eq(Mux(s1_pad, d.z_in, code))
        m.d.comb += [older_wr.addr.eq(s1_c), older_wr.data.eq(newer_rd.data), older_wr.en.eq(s1),
                     newer_wr.addr.eq(s1_c), newer_wr.data.eq(new), newer_wr.en.eq(s1)]
        window = Signal(data.ArrayLayout(word, TAPS))     # [kh*3 + kw]
        column = (older_rd.data, newer_rd.data, new)
        with m.If(s1):
            for kh in range(KERNEL):
                m.d.sync += [window[kh * KERNEL + kw].eq(window[kh * KERNEL + kw + 1]) for kw in range(KERNEL - 1)]
                m.d.sync += window[kh * KERNEL + KERNEL - 1].eq(column[kh])
        valid, tag = Signal(), Signal.like(s1_tag)
        m.d.sync += [valid.eq(s1_emit), tag.eq(s1_tag)]
        m.d.comb += [self.o.valid.eq(valid), self.o.payload.x.eq(window), self.o.payload.tag.eq(tag)]

        with m.If(self.start):
            m.d.sync += [running.eq(1), loading.eq(1), load.eq(0), ct.eq(0), r.eq(0), c.eq(0),
                         row_phase.eq(0), col_phase.eq(0), ih.eq(-d.pad_top), iw.eq(-d.pad_left),
                         act_word.eq(d.origin), row_word.eq(d.origin), tile_word.eq(d.origin),
                         w_word.eq(0), out.eq(0)]
        return m


class DepthwiseUnit(wiring.Component):
    """i: a window {x: 9 x C codes, tag} -> o: {s: C x signed(acc_width), tag} with
    s[k] = 2^n * sum_t w[t][k] * x[t][k] (n: the IOSO unit's shift, whose code is 0 in a
    depthwise layer, §2); config `weights`. Two stages (`latency` = 2): C x 9 multipliers and
    two partial sums (taps 0..4, 5..8), then their sum."""

    latency = 2

    def __init__(self, params, tag_layout):
        self._p = params
        super().__init__({
            "i": In(stream.Signature(window_layout(params, tag_layout))),
            "weights": In(weights_layout(params)),
            "o": Out(stream.Signature(data.StructLayout({
                "s": data.ArrayLayout(signed(params.acc_width), params.cols), "tag": tag_layout}))),
        })

    def elaborate(self, platform):
        m = Module()
        en = stall_control(m, self.i, self.o, self.latency)
        shift = self._p.isg_shift if self._p.isg else 0
        out = Signal(self.o.payload.shape())
        m.d.comb += out.tag.eq(delay(m, en, self.i.payload.tag, 1, name="tag"))
        for k in range(self._p.cols):
            products = [self.weights[t][k] * self.i.payload.x[t][k] for t in range(TAPS)]
            halves = [delay(m, en, sum(part), 1, name=f"half{k}_{h}")
                      for h, part in enumerate((products[:5], products[5:]))]
            m.d.comb += out.s[k].eq((halves[0] + halves[1]) << shift)
        m.d.comb += self.o.payload.eq(delay(m, en, out, 1, name="dw"))
        return m
