"""The engine's host protocol: one command stream in, one response stream out.

A command writes or reads one 128-bit word of an address space. The driver (hw/driver.py) and
the RTL (hw/engine.py, hw/controller.py) both take their numbers from here, so they cannot drift
apart; the numbers of the arithmetic come from golden/spec.py.
"""

from enum import IntEnum

from amaranth.lib import data

from golden.spec import CODE_BITS, GRANULARITY

LANE_BITS = CODE_BITS                   # one code per byte lane, lane 0 lowest
LANES = GRANULARITY                     # a word holds one K-tile: G channels' codes
WORD_BITS = LANES * LANE_BITS           # 128
ADDR_BITS = 20
TABLE_M = slice(0, 32)                  # TABLE word fields: M (two's complement) ...
TABLE_B = slice(32, 96)                 # ... and B


class Space(IntEnum):
    CSR = 0        # descriptor registers, control, status, performance counters
    ACT = 1        # input activations: word (ih * W + iw) * CT + ct holds 16 channel codes
    WEIGHT = 2     # weight rows: word (nt * KT + kt) * 16 + r holds 16 output channels' codes
    TABLE = 3      # per output channel k: data = {B[63:0] at bits 32.., M at bits 0..31}
                   # (the FP16 variant: FP16 m at bits 0..15, b at bits 32..47)
    CODE = 4       # per input-channel tile ct: the ISG group code s in bits 1..0 (two's complement)
                   # (the group-multiplier variant: word tiles + g holds group g's scale)
    OUT = 5        # output codes: word m * NT + nt holds 16 output channels (read only)


class Csr(IntEnum):
    """Register addresses in Space.CSR. Registers 2.. are the layer descriptor."""
    START = 0        # write: start the layer
    STATUS = 1       # read: bit 0 done, bit 1 busy
    H = 2            # input rows held in ACT (a pass's slice)
    W = 3            # input columns
    CT = 4           # input-channel tiles (C_pad / 16)
    NT = 5           # output-channel tiles
    KH = 6
    KW = 7
    STRIDE = 8
    PAD_TOP = 9      # rows of zero-point padding above the slice
    PAD_LEFT = 10
    HO = 11          # output rows of this pass
    WO = 12
    Z_IN = 13        # input zero-point (padding code)
    SHIFT = 14       # F
    Z_OUT = 15
    LO = 16
    HI = 17
    MODE = 18        # Mode: what the pass computes
    Z_IN2 = 19       # ADD: the second input's zero-point
    M1 = 20          # ADD: the multipliers of the two inputs (§5), two's complement
    M2 = 21
    REUSE = 22       # 1: every weight tile of the pass is the same (pools): two are loaded
    # Registers 23..31: products of the ones above, which the driver computes (`address_registers`)
    # so that the sequencers step counters instead of multiplying in the clock cycle. Word
    # offsets are modulo 2^ADDR_BITS: an in-bounds address comes out exact.
    WEIGHT_ROWS = 23  # WEIGHT rows the weight feed loads: 16 per tile (REUSE: two tiles at most)
    OUT_WORDS = 24   # OUT words the pass writes: HO*WO*NT
    ACT_WORDS = 25   # ACT words of one input image: H*W*CT (ADD: the second input's first word)
    ROW_WORDS = 26   # ACT words between vertically adjacent pixels: W*CT
    STEP_W = 27      # between horizontally adjacent outputs' taps: STRIDE*CT
    STEP_H = 28      # between vertically adjacent outputs' taps: STRIDE*W*CT
    ORIGIN = 29      # the word of output (0, 0)'s tap (0, 0): -(PAD_TOP*W + PAD_LEFT)*CT
    ROWS_WALKED = 30  # DW: input rows a tile walks, padding included: (HO-1)*STRIDE + KH
    COLS_WALKED = 31  # DW: input columns: (WO-1)*STRIDE + KW
    CYCLES = 32      # read: cycles from start to done
    BUSY = 33        # read: cycles the array accepted an activation vector (useful MACs)
    STALL = 34       # read: cycles running without the array accepting a vector


class Mode(IntEnum):
    """What a pass computes (CSR MODE, ARCHITECTURE §6)."""
    CONV = 0         # conv/FC, average pool: the accumulator adds the K-tiles
    MAX = 1          # max pool: the accumulator keeps the largest
    ADD = 2          # residual add: ACT holds both inputs, the add unit feeds the BN unit
    DW = 3           # 3x3 depthwise conv on the depthwise path (window feed, 3x3 MAC unit)


DESCRIPTOR = tuple(c for c in Csr if Csr.H <= c <= Csr.COLS_WALKED)
ADDRESS_REGISTERS = tuple(c for c in Csr if Csr.WEIGHT_ROWS <= c <= Csr.COLS_WALKED)


def address_registers(d: dict, rows: int) -> dict:
    """The registers 23..31 of descriptor `d` (shape registers H..REUSE) for an array of `rows`
    rows, modulo 2^ADDR_BITS."""
    tiles = d[Csr.KH] * d[Csr.KW] * d[Csr.CT] * d[Csr.NT]
    row_words = d[Csr.W] * d[Csr.CT]
    values = {
        Csr.WEIGHT_ROWS: (min(tiles, 2) if d[Csr.REUSE] else tiles) * rows,
        Csr.OUT_WORDS: d[Csr.HO] * d[Csr.WO] * d[Csr.NT],
        Csr.ACT_WORDS: d[Csr.H] * row_words,
        Csr.ROW_WORDS: row_words,
        Csr.STEP_W: d[Csr.STRIDE] * d[Csr.CT],
        Csr.STEP_H: d[Csr.STRIDE] * row_words,
        Csr.ORIGIN: -(d[Csr.PAD_TOP] * row_words + d[Csr.PAD_LEFT] * d[Csr.CT]),
        Csr.ROWS_WALKED: (d[Csr.HO] - 1) * d[Csr.STRIDE] + d[Csr.KH],
        Csr.COLS_WALKED: (d[Csr.WO] - 1) * d[Csr.STRIDE] + d[Csr.KW],
    }
    return {reg: v % (1 << ADDR_BITS) for reg, v in values.items()}

command_layout = data.StructLayout({
    "write": 1,
    "space": 3,
    "addr": ADDR_BITS,
    "data": WORD_BITS,
})


class Depths:
    """Scratchpad depths of the default build (words); the driver splits larger layers into passes.

    Sized for ResNet layers at 224 px: a 28x28x128 input is 6,272 ACT words, its 3x3x128x128
    kernel 9,216 WEIGHT rows; larger layers take several passes.
    """

    def __init__(self, act=16384, weight=16384, acc=4096, out=16384, channels=2048, tiles=128,
                 line=256):
        self.act, self.weight, self.acc, self.out = act, weight, acc, out
        self.channels, self.tiles = channels, tiles
        self.line = line        # DW mode's line buffers: padded input columns

    def to_json(self) -> dict:
        return dict(vars(self))


DESC_FIELD_BITS = 16
MULTIPLIER_FIELD_BITS = 32              # M1, M2: as TABLE_M
descriptor_layout = data.StructLayout({
    c.name.lower(): MULTIPLIER_FIELD_BITS if c in (Csr.M1, Csr.M2)
    else ADDR_BITS if c in ADDRESS_REGISTERS else DESC_FIELD_BITS
    for c in DESCRIPTOR})
