"""cocotb testbench of hw.ioso.IosoUnit against golden.isg_combine, bit-exact.

Every code s in {-1, 0, +1} meets partial sums at both ends of their range. With ISG the
reference is golden's combine, the beats of each code forming that code's group; without ISG
the unit must be a wire: q = p whatever s says, in the same cycle.
"""

import cocotb
import numpy as np
import torch
from amaranth import unsigned
from amaranth.lib import data

import golden
from hw.ioso import IosoUnit
from sim import streams

TAG = data.StructLayout({"addr": unsigned(6), "last": 1})
CODES = (-1, 0, 1)


def make_dut(params):
    return IosoUnit(params, TAG)


def make_beats(rng, params, n):
    """Partial sums [n, C] and codes [n]: first every code against all-minimum and all-maximum
    vectors, then random beats with a third of the lanes at -1, 0, 1 or a bound."""
    lo, hi = -2 ** (params.psum_width - 1), 2 ** (params.psum_width - 1) - 1
    p = rng.integers(lo, hi + 1, (n, params.cols))
    p = np.where(rng.random(p.shape) < 0.3, rng.choice([lo, hi, -1, 0, 1], p.shape), p)
    s = rng.choice(CODES, n)
    corners = [(bound, code) for code in CODES for bound in (lo, hi)]
    for k, (bound, code) in enumerate(corners):
        p[k], s[k] = bound, code
    return p, s


def reference(params, p, s):
    if not params.isg:
        return p
    partials = torch.stack([torch.from_numpy(np.where(s[:, None] == code, p, 0)) for code in CODES])
    return golden.isg_combine(partials, CODES, params.isg_shift).numpy()


async def stream(dut, n, *, bubbles=0.0, stalls=0.0):
    unit = make_dut(streams.dut_params())
    rng = await streams.reset(dut, unit)
    p, s = make_beats(rng, unit.params, n)
    q = reference(unit.params, p, s)
    tags = [{"addr": k % 64, "last": int(k % 5 == 4)} for k in range(n)]
    items = [{"p": p[k].tolist(), "s": int(s[k]), "tag": tags[k]} for k in range(n)]
    expected = [{"q": q[k].tolist(), "tag": tags[k]} for k in range(n)]
    source, sink = await streams.pipe(dut, unit, items, expected, rng=rng, bubbles=bubbles,
                                      stalls=stalls)
    return unit, source, sink


@cocotb.test()
async def full_rate(dut):
    """One beat per cycle, each out exactly `latency` cycles after it went in."""
    unit, source, sink = await stream(dut, 300)
    streams.expect_full_rate(source, sink, unit.latency)


@cocotb.test()
async def backpressure(dut):
    """Random input bubbles and output backpressure."""
    await stream(dut, 2000, bubbles=0.2, stalls=0.3)
