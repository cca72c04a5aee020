"""pytest entry of sim/tb_postproc.py: BnUnit and ActUnit, one simulator each."""

import pytest

from hw.params import EngineParams
from sim import runner, tb_postproc

PARAMS = EngineParams()
UNITS = {"bn": (tb_postproc.make_bn, "bn_unit"), "act": (tb_postproc.make_act, "act_unit")}


@pytest.fixture(scope="module", params=sorted(UNITS))
def unit(request):
    make, top = UNITS[request.param]
    return request.param, runner.build(make(PARAMS), top, PARAMS)


def test_lint(unit):
    runner.lint(unit[1])


def test_postproc(unit):
    name, sim = unit
    runner.run(sim, "sim.tb_postproc", tests=rf"\.{name}_")
