"""pytest entry of sim/tb_ioso.py: the IOSO unit with ISG (n = 4); without ISG it is a wire."""

import re

import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from hw.params import EngineParams
from sim import runner, tb_ioso


@pytest.fixture(scope="module")
def sim():
    params = EngineParams()
    return runner.build(tb_ioso.make_dut(params), "ioso_unit", params)


def test_lint(sim):
    runner.lint(sim)


def test_ioso(sim):
    runner.run(sim, "sim.tb_ioso")


def test_no_isg_is_a_wire():
    """Built without ISG the unit is wires only: no cells, no latency."""
    params = EngineParams(isg=False)
    assert re.findall(r"cell \\(\$\w+)", rtlil.convert(tb_ioso.make_dut(params))) == []
    dut = tb_ioso.make_dut(params)
    assert dut.latency == 0

    async def check(ctx):
        for value, code in ((-2 ** (params.psum_width - 1), 1), (12345, -1), (7, 0)):
            ctx.set(dut.i.payload.p[3], value)
            ctx.set(dut.i.payload.s, code)
            assert ctx.get(dut.o.payload.q[3]) == value

    simulator = Simulator(dut)
    simulator.add_testbench(check)
    simulator.run()
    assert params.ioso_width == params.psum_width
