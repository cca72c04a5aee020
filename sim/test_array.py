"""pytest entry of sim/tb_array.py: the default 16x16 int8 array and a small odd-shaped one."""

import pytest

from hw.params import EngineParams
from sim import runner, tb_array

PARAMS = {"16x16": EngineParams(), "5x3": EngineParams(rows=5, cols=3, a_bits=3, w_bits=5)}


@pytest.fixture(scope="module", params=list(PARAMS.values()), ids=list(PARAMS))
def sim(request):
    return runner.build(tb_array.make_dut(request.param), "systolic_array", request.param)


def test_lint(sim):
    runner.lint(sim)


def test_array(sim):
    runner.run(sim, "sim.tb_array")
