"""The constants of docs/ARCHITECTURE.md, owned here: golden, the calibrator and the engine's
build parameters read them from this module, so a number of the spec is written once.

The host protocol's word layout (128-bit words of 8-bit lanes, the TABLE fields) belongs to the
engine's interface and is owned by hw/host.py, which derives it from these.
"""

ACT_BITS = range(2, 9)          # §1: unsigned activation codes of the integer datapath
W_BITS = range(2, 9)            # §1: signed weight codes
CODE_BITS = max(ACT_BITS.stop, W_BITS.stop) - 1     # the widest code: 8 bits

ISG_SHIFTS = range(0, 9)        # §2: the shift n of gamma = 1 + s 2^-n
ISG_SHIFT = 4                   # §2: the paper's n
PAPER_GROUP_CODES = (0, -1, 1)  # §2: the paper's g = 3 groups, scales (1, 1 - 2^-n, 1 + 2^-n)

MAX_SHIFT = 62                  # §3: F in 1..62 keeps t and the rounding constant in int64
W_M = 24                        # §3: signed width of the multiplier table M
MAX_ROUNDING_SLACK = 2.0 ** -4  # §3: the largest fixed-point error term a table may add (codes)

GRANULARITY = 16                # §4: G, the array's rows: ISG groups come in multiples of it

W_ACC = 32                      # §7: the accumulator width of the default engine
W_T = W_ACC + W_M + 1           # §7: signed width of t = S*M + B in the default engine
