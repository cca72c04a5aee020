"""pytest entry of sim/tb_postproc.py: BnUnit and ActUnit, one simulator each."""

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

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


def _build_bn_in(root: str) -> str:
    """In a fresh process: builds BnUnit under `root`, noting each build it runs in root/builds."""
    runner.BUILD_ROOT, build = Path(root), runner._build

    def noted(*args):
        with open(Path(root) / "builds", "a") as log:
            log.write("built\n")
        build(*args)
    runner._build = noted
    return str(runner.build(tb_postproc.make_bn(PARAMS), "bn_unit", PARAMS).build_dir)


def test_two_builders_at_once_share_one_build(tmp_path):
    """Two processes asking for the same simulator (make test's workers, make report beside make
    sim-net) get one build: the second waits for the first and reuses it."""
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        dirs = list(pool.map(_build_bn_in, [str(tmp_path)] * 2))
    assert dirs[0] == dirs[1] and (tmp_path / "builds").read_text() == "built\n"
    sim = runner.Simulator("bn_unit", Path(dirs[0]), PARAMS)
    runner.run(sim, "sim.tb_postproc", tests=r"\.bn_", quiet=True)
