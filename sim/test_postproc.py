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


def test_zero_initialized_memories_compile_as_loops():
    """Yosys initializes a memory word by word; the simulator's Verilog zeroes it in a loop, and
    leaves any other initial block as it is."""
    words = "".join(f"    mem[{i}] = 8'h00;\n" for i in range(3))
    zeroed = f"  reg [7:0] mem [2:0];\n  initial begin\n{words}  end\n"
    assert runner.compact_zero_inits(zeroed) == (
        "  reg [7:0] mem [2:0];\n  integer mem__zero_index;\n  initial\n"
        "    for (mem__zero_index = 0; mem__zero_index <= 2; mem__zero_index = mem__zero_index + 1)\n"
        "      mem[mem__zero_index] = 0;\n")
    for kept in (zeroed.replace("[1] = 8'h00", "[1] = 8'h01"),      # a nonzero word
                 zeroed.replace("[2:0]", "[3:0]"),                  # a word left out
                 zeroed.replace("mem[2]", "mem[1]")):               # a word twice
        assert runner.compact_zero_inits(kept) == kept
