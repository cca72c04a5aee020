"""The IOSO unit (hw/ioso.py) under Amaranth's simulator: it is combinational, so it needs no
clock and no Verilator build; inside the engine its Verilog runs in every layer of
sim/test_engine.py.

With ISG (n = 4) every code s in {-1, 0, +1} meets partial sums at both ends of their range and
random ones, against golden.isg_combine (each code's beats forming that code's group); without
ISG the unit is a wire; the area report's group-multiplier variant meets its formula.
"""

import re

import numpy as np
import torch
from amaranth import unsigned
from amaranth.back import rtlil
from amaranth.lib import data
from amaranth.sim import Simulator

import golden
from hw.ioso import IosoUnit
from hw.params import EngineParams

TAG = data.StructLayout({"addr": unsigned(6), "last": 1})
CODES = (-1, 0, 1)


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


def simulate(dut, check):
    simulator = Simulator(dut)
    if dut.multiplier:          # the group scale registers are the only clocked state
        simulator.add_clock(1e-8)
    simulator.add_testbench(check)
    simulator.run()


def test_shift_add_against_golden():
    """Every beat's q equals golden's combine; valid, ready and the tag pass straight through."""
    params = EngineParams()
    dut = IosoUnit(params, TAG)
    rng = np.random.default_rng(1)
    p, s = make_beats(rng, params, 300)
    q = reference(params, p, s)

    async def check(ctx):
        for k in range(len(p)):
            valid, ready, tag = int(rng.integers(2)), int(rng.integers(2)), {"addr": k % 64, "last": k % 2}
            ctx.set(dut.i.payload, {"p": p[k].tolist(), "s": int(s[k]), "tag": tag})
            ctx.set(dut.i.valid, valid)
            ctx.set(dut.o.ready, ready)
            assert [ctx.get(dut.o.payload.q[c]) for c in range(params.cols)] == q[k].tolist(), k
            assert (ctx.get(dut.o.valid), ctx.get(dut.i.ready)) == (valid, ready)
            assert (ctx.get(dut.o.payload.tag.addr), ctx.get(dut.o.payload.tag.last)) == (k % 64, k % 2)

    simulate(dut, check)
    assert IosoUnit.latency_of(params) == 0


def test_no_isg_is_a_wire():
    """Built without ISG the unit is wires only: no cells, q = p whatever s says."""
    params = EngineParams(isg=False)
    dut = IosoUnit(params, TAG)
    assert re.findall(r"cell \\(\$\w+)", rtlil.convert(IosoUnit(params, TAG))) == []

    async def check(ctx):
        for value, code in ((-2 ** (params.psum_width - 1), 1), (12345, -1), (7, 0)):
            ctx.set(dut.i.payload.p[3], value)
            ctx.set(dut.i.payload.s, code)
            assert ctx.get(dut.o.payload.q[3]) == value

    simulate(dut, check)
    assert params.ioso_width == params.psum_width


def test_group_multiplier():
    """The area report's ICWQ variant: q = (p * g) >> (W_M - 1 - n) with the scale g of the
    beat's group (the code's two bits), written through `scale`."""
    params = EngineParams(isg_unit="multiplier")
    dut = IosoUnit(params, TAG)
    rng = np.random.default_rng(5)
    lo, hi = -2 ** (params.psum_width - 1), 2 ** (params.psum_width - 1) - 1
    scales = [0, 2 ** params.mult_width - 1, *rng.integers(0, 2 ** params.mult_width, 2).tolist()]
    drop = params.mult_width - 1 - params.isg_shift

    async def check(ctx):
        for group, g in enumerate(scales):
            ctx.set(dut.scale, {"en": 1, "group": group, "value": g})
            await ctx.tick()
        ctx.set(dut.scale.en, 0)
        for _ in range(40):
            p = rng.choice([lo, hi, -1, 0, 1, *rng.integers(lo, hi + 1, 5)], params.cols).tolist()
            code = int(rng.choice([-1, 0, 1, -2]))
            ctx.set(dut.i.payload.p, p)
            ctx.set(dut.i.payload.s, code)
            g = scales[code & 3]
            assert [ctx.get(dut.o.payload.q[c]) for c in range(params.cols)] == [(v * g) >> drop for v in p]

    simulate(dut, check)
