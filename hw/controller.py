"""The layer sequencers: im2col activation feed and double-buffered weight feed (§6).

Loop order, outermost first: output-channel tile nt, kernel row kh, kernel column kw, input
channel tile ct, output row oh, output column ow. One K-tile (kh, kw, ct) of one N-tile is a
weight tile; it stays in the array for all Ho*Wo pixels, while the next tile loads behind it.
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.host import ADDR_BITS, LANE_BITS, WORD_BITS, descriptor_layout

COUNT_BITS = 24


def array_tag_layout(depths) -> data.StructLayout:
    """Side information that travels with a vector through array, IOSO unit and accumulator."""
    return data.StructLayout({
        "m": range(depths.acc), "out": range(depths.out), "nt": range(max(2, depths.channels)),
        "first": 1, "last": 1, "s": signed(2),
    })


def array_input_layout(params, tag_layout) -> data.StructLayout:
    return data.StructLayout({"x": data.ArrayLayout(unsigned(params.a_bits), params.rows),
                              "swap": 1, "tag": tag_layout})


def weight_load_layout(params) -> data.StructLayout:
    return data.StructLayout({"row": range(params.rows),
                              "w": data.ArrayLayout(signed(params.w_bits), params.cols)})


class ActivationFeed(wiring.Component):
    """Generates the im2col activation vectors of a layer from the ACT scratchpad.

    A read address is issued in the cycle a request is accepted; the word arrives in the next
    cycle with the request's tag (one register stage). Out-of-bounds taps become the input
    zero-point. The first vector of a weight tile carries `swap` and waits until the weight feed
    has loaded that tile (with REUSE, every tile after the first two is one of those two:
    the banks alternate and hold the same weights).
    """

    def __init__(self, params, depths):
        self._p = params
        self._tile_bits = max(1, (depths.tiles - 1).bit_length())
        tag = array_tag_layout(depths)
        super().__init__({
            "start": In(1), "desc": In(descriptor_layout), "codes": In(2 * depths.tiles),
            "tiles_loaded": In(COUNT_BITS), "swapped": Out(COUNT_BITS), "finished": Out(1),
            "mem_addr": Out(range(depths.act)), "mem_en": Out(1), "mem_data": In(WORD_BITS),
            "o": Out(stream.Signature(array_input_layout(params, tag))),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.desc
        nt, kh, kw, ct, oh, ow = (Signal(16, name=n) for n in ("nt", "kh", "kw", "ct", "oh", "ow"))
        tile = Signal(COUNT_BITS)
        running = Signal()
        # Step counters in place of products (§6): the tap's input pixel (ih, iw) and ACT word,
        # the output pixel and OUT word, each stepped from the last by a descriptor register.
        ih, iw, ih_tile, iw_tile = (Signal(signed(20), name=n) for n in ("ih", "iw", "ih_tile", "iw_tile"))
        # ACT words of the tap, of its row's first output, and of output (0, 0)'s tap at
        # (kh, 0, 0), (kh, kw, 0) and (kh, kw, ct)
        word, row_word, kh_word, kw_word, tile_word = (
            Signal(ADDR_BITS, name=n) for n in ("word", "row_word", "kh_word", "kw_word", "tile_word"))
        pixel, out = Signal.like(self.o.payload.tag.m), Signal.like(self.o.payload.tag.out)

        pad = (ih < 0) | (ih >= d.h) | (iw < 0) | (iw >= d.w)
        last_ow, last_oh = ow == d.wo - 1, oh == d.ho - 1
        last_ct, last_kw, last_kh, last_nt = ct == d.ct - 1, kw == d.kw - 1, kh == d.kh - 1, nt == d.nt - 1
        wrap_kw, wrap_kh = last_ct & last_kw, last_ct & last_kw & last_kh
        swap = (oh == 0) & (ow == 0)
        # a tile's first vector waits for its weights; with REUSE tiles 2.. are tiles 0 and 1
        needed = Mux(d.reuse & (tile > 1), 1, tile)
        request = running & (~swap | (self.tiles_loaded > needed))

        # the next tile's first tap, for the current tile's last vector
        next_ih_tile = Mux(wrap_kh, -d.pad_top, ih_tile + 1)        # when kw wraps
        next_iw_tile = Mux(wrap_kw, -d.pad_left, iw_tile + 1)       # when ct wraps
        next_kh_word = Mux(wrap_kh, d.origin, kh_word + d.row_words)
        next_kw_word = Mux(wrap_kw, next_kh_word, kw_word + d.ct)
        next_tile_word = Mux(last_ct, next_kw_word, tile_word + 1)

        held = Signal(self.o.payload.shape())
        held_pad = Signal()
        valid = Signal()
        advance = ~valid | self.o.ready
        m.d.comb += [
            self.mem_addr.eq(Mux(pad, 0, word)), self.mem_en.eq(advance),
            self.o.valid.eq(valid), self.o.payload.swap.eq(held.swap), self.o.payload.tag.eq(held.tag),
        ]
        for r in range(self._p.rows):
            code = self.mem_data.word_select(r, LANE_BITS)[:self._p.a_bits]
            m.d.comb += self.o.payload.x[r].eq(Mux(held_pad, d.z_in, code))

        with m.If(advance):
            m.d.sync += valid.eq(request)
            with m.If(request):
                m.d.sync += [
                    held_pad.eq(pad), held.swap.eq(swap), held.tag.m.eq(pixel), held.tag.out.eq(out),
                    held.tag.nt.eq(nt), held.tag.first.eq((kh == 0) & (kw == 0) & (ct == 0)),
                    held.tag.last.eq(last_kh & last_kw & last_ct),
                    held.tag.s.eq(self.codes.word_select(ct[:self._tile_bits], 2)),
                    ow.eq(Mux(last_ow, 0, ow + 1)), pixel.eq(pixel + 1), out.eq(out + d.nt),
                    iw.eq(iw + d.stride), word.eq(word + d.step_w),
                ]
                with m.If(swap):
                    m.d.sync += self.swapped.eq(self.swapped + 1)
                with m.If(last_ow):
                    m.d.sync += [oh.eq(Mux(last_oh, 0, oh + 1)), ih.eq(ih + d.stride), iw.eq(iw_tile),
                                 row_word.eq(row_word + d.step_h), word.eq(row_word + d.step_h)]
                    with m.If(last_oh):
                        m.d.sync += [tile.eq(tile + 1), ct.eq(Mux(last_ct, 0, ct + 1)), pixel.eq(0),
                                     out.eq(Mux(wrap_kh, nt + 1, nt)),
                                     ih.eq(Mux(wrap_kw, next_ih_tile, ih_tile)),
                                     iw.eq(Mux(last_ct, next_iw_tile, iw_tile)),
                                     tile_word.eq(next_tile_word), row_word.eq(next_tile_word),
                                     word.eq(next_tile_word)]
                        with m.If(last_ct):
                            m.d.sync += [kw.eq(Mux(last_kw, 0, kw + 1)), iw_tile.eq(next_iw_tile),
                                         kw_word.eq(next_kw_word)]
                            with m.If(last_kw):
                                m.d.sync += [kh.eq(Mux(last_kh, 0, kh + 1)), ih_tile.eq(next_ih_tile),
                                             kh_word.eq(next_kh_word)]
                                with m.If(last_kh):
                                    m.d.sync += nt.eq(nt + 1)
                                    with m.If(last_nt):
                                        m.d.sync += [running.eq(0), self.finished.eq(1)]

        with m.If(self.start):
            m.d.sync += [running.eq(1), self.finished.eq(0), tile.eq(0), self.swapped.eq(0),
                         nt.eq(0), kh.eq(0), kw.eq(0), ct.eq(0), oh.eq(0), ow.eq(0), valid.eq(0),
                         ih.eq(-d.pad_top), ih_tile.eq(-d.pad_top), iw.eq(-d.pad_left),
                         iw_tile.eq(-d.pad_left), pixel.eq(0), out.eq(0)]
            m.d.sync += [w.eq(d.origin) for w in (word, row_word, kh_word, kw_word, tile_word)]
        return m


class WeightFeed(wiring.Component):
    """Streams weight rows into the array's shadow bank, one tile ahead of the activations.

    Tile j may load once j swaps have been issued (the shadow bank is then free; the array
    itself holds off loads while vectors that use the old bank are in flight).
    """

    def __init__(self, params, depths):
        self._p = params
        self._row_bits = (params.rows - 1).bit_length()
        super().__init__({
            "start": In(1), "rows_total": In(COUNT_BITS), "swapped": In(COUNT_BITS),
            "tiles_loaded": Out(COUNT_BITS),
            "mem_addr": Out(range(depths.weight)), "mem_en": Out(1), "mem_data": In(WORD_BITS),
            "o": Out(stream.Signature(weight_load_layout(params))),
        })

    def elaborate(self, platform):
        m = Module()
        row = Signal(COUNT_BITS)
        request = (row < self.rows_total) & ((row >> self._row_bits) <= self.swapped)
        valid, held_row = Signal(), Signal(range(self._p.rows))
        advance = ~valid | self.o.ready
        m.d.comb += [self.mem_addr.eq(row), self.mem_en.eq(advance),
                     self.o.valid.eq(valid), self.o.payload.row.eq(held_row)]
        for c in range(self._p.cols):
            m.d.comb += self.o.payload.w[c].eq(self.mem_data.word_select(c, LANE_BITS)[:self._p.w_bits])
        with m.If(advance):
            m.d.sync += valid.eq(request)
            with m.If(request):
                m.d.sync += [held_row.eq(row[:self._row_bits]), row.eq(row + 1)]
        with m.If(self.o.valid & self.o.ready & (held_row == self._p.rows - 1)):
            m.d.sync += self.tiles_loaded.eq(self.tiles_loaded + 1)
        with m.If(self.start):
            m.d.sync += [row.eq(0), valid.eq(0), self.tiles_loaded.eq(0)]
        return m
