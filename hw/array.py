"""Weight-stationary systolic array (ARCHITECTURE §6).

Dataflow: activations enter on the left, row r skewed by r cycles, and move right one PE per
cycle; partial sums enter the top row as 0 and move down one PE per cycle; column c leaves the
bottom row c cycles after column 0 and is de-skewed by C-1-c cycles, so every accepted input
vector x yields one output vector p[c] = sum_r w[r][c] * x[r] exactly `latency` = R+C-1 enabled
cycles later.

Double buffering: every PE holds two weights (banks 0/1) and each activation carries the bank it
must meet, so a bank switch sweeps through the array with the data and no drain is needed at a
tile boundary. `swap` on an input vector switches the active bank for it and all later vectors;
`w_load` writes rows of the other (shadow) bank.

`w_load.ready` rule (the controller and cycle models rely on it): row r of the shadow bank may be
written once `row_drain(r) = max(0, r + C - 2)` pipeline advances (cycles with `i.ready` high)
have passed since the last accepted swap vector (from reset on, at once), and never in a cycle in
which a swap vector is offered on `i`. The wait lets the old tile's last vector (which reads
PE (r, C-1) r+C-2 advances after the swap) leave the row before it is overwritten. So a
controller offers a tile's swap vector once all R rows of its bank were written, and may offer
the next tile's rows as soon as that swap vector is on `i` (they wait for it). With rows loaded
in order as soon as allowed, the next tile's load ends R+C-2 cycles after the swap: tiles of at
least `latency` = R+C-1 vectors run back to back without a bubble; the first tile waits R cycles.
Row r's PEs are only as wide as a sum of r+1 products needs.
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.params import EngineParams
from hw.pipeline import delay, stall_control


def _act_layout(a_bits: int) -> data.StructLayout:
    """What moves right through a PE row: the activation and the weight bank it must meet."""
    return data.StructLayout({"x": unsigned(a_bits), "bank": 1})


class PE(wiring.Component):
    """One cell: when `en`, psum_out <= psum_in + w[act.bank] * act.x and act moves on.

    `w_we` writes `w_data` into bank `w_bank` regardless of `en`: the array only writes a bank
    that no activation in flight still reads.
    """

    def __init__(self, a_bits: int, w_bits: int, psum_width: int):
        self._w_bits = w_bits
        super().__init__({
            "en": In(1),
            "act_in": In(_act_layout(a_bits)),
            "act_out": Out(_act_layout(a_bits)),
            "psum_in": In(signed(psum_width)),
            "psum_out": Out(signed(psum_width)),
            "w_we": In(1),
            "w_bank": In(1),
            "w_data": In(signed(w_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        w = [Signal(signed(self._w_bits), name=f"w{k}", reset_less=True) for k in range(2)]
        for k, bank in enumerate(w):
            with m.If(self.w_we & (self.w_bank == k)):
                m.d.sync += bank.eq(self.w_data)
        psum = self.psum_in + Mux(self.act_in.bank, w[1], w[0]) * self.act_in.x
        m.d.comb += [
            self.act_out.eq(delay(m, self.en, self.act_in, 1, name="act")),
            self.psum_out.eq(delay(m, self.en, psum, 1, name="psum", shape=self.psum_out.shape())),
        ]
        return m


class SystolicArray(wiring.Component):
    """R x C weight-stationary array with a double-buffered weight port (see the module doc).

    i      : {x: R x unsigned(a_bits), swap: 1, tag}      one vector per cycle
    o      : {p: C x signed(psum_width), tag}              p = x @ w of the vector's bank
    w_load : {row: range(R), w: C x signed(w_bits)}        writes one row of the shadow bank

    `tag` (any shape) travels unchanged with its vector.
    """

    def __init__(self, params: EngineParams, tag_layout):
        self.params = params
        rows, cols = params.rows, params.cols
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "x": data.ArrayLayout(unsigned(params.a_bits), rows),
                "swap": 1,
                "tag": tag_layout,
            }))),
            "o": Out(stream.Signature(data.StructLayout({
                "p": data.ArrayLayout(signed(params.psum_width), cols),
                "tag": tag_layout,
            }))),
            "w_load": In(stream.Signature(data.StructLayout({
                "row": range(rows),
                "w": data.ArrayLayout(signed(params.w_bits), cols),
            }))),
        })

    @staticmethod
    def latency_of(params: EngineParams) -> int:
        """Enabled cycles from accepting an input vector to offering its output vector."""
        return params.rows + params.cols - 1

    @property
    def latency(self) -> int:
        return self.latency_of(self.params)

    def row_drain(self, row: int) -> int:
        """Pipeline advances after an accepted swap before shadow row `row` may be written."""
        return max(0, row + self.params.cols - 2)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        en = stall_control(m, self.i, self.o, self.latency)
        swap_offered = self.i.valid & self.i.p.swap

        # `bank` is the bank of the last accepted vector; w_load writes the other one.
        bank = Signal()
        drain_max = self.row_drain(p.rows - 1)
        drain = Signal(range(drain_max + 1), init=drain_max)    # saturating advances since swap
        with m.If(swap_offered & en):
            m.d.sync += [bank.eq(~bank), drain.eq(0)]
        with m.Elif(en & (drain != drain_max)):
            m.d.sync += drain.eq(drain + 1)
        row_free = drain + 2 >= self.w_load.p.row + p.cols        # drain >= row_drain(row)
        m.d.comb += self.w_load.ready.eq(row_free & ~swap_offered)
        load = self.w_load.valid & self.w_load.ready

        pes = [[PE(p.a_bits, p.w_bits, p.product_width + ceil_log2(r + 1)) for _ in range(p.cols)]
               for r in range(p.rows)]
        for r, pe_row in enumerate(pes):
            head = Signal(_act_layout(p.a_bits), name=f"head_{r}")
            m.d.comb += [head.x.eq(self.i.p.x[r]), head.bank.eq(bank ^ self.i.p.swap)]
            act = delay(m, en, head, r, name=f"skew{r}")
            for c, pe in enumerate(pe_row):
                m.submodules[f"pe_{r}_{c}"] = pe
                m.d.comb += [
                    pe.en.eq(en),
                    pe.act_in.eq(act),
                    pe.psum_in.eq(pes[r - 1][c].psum_out if r else 0),
                    pe.w_we.eq(load & (self.w_load.p.row == r)),
                    pe.w_bank.eq(~bank),
                    pe.w_data.eq(self.w_load.p.w[c]),
                ]
                act = pe.act_out

        for c, pe in enumerate(pes[-1]):
            m.d.comb += self.o.p.p[c].eq(
                delay(m, en, pe.psum_out, p.cols - 1 - c, name=f"deskew{c}"))
        m.d.comb += self.o.p.tag.eq(delay(m, en, self.i.p.tag, self.latency, name="tag"))
        return m
