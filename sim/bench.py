"""`make bench-sim`: Verilator build time of the engine and simulation speed on a full layer.

The build is timed from an empty build folder (a temporary one, so the cached build is left
alone); the layer run is timed end to end (plan, command file, simulation, read-back, golden
check) and for the simulator alone, on resnet50_l3 with every output checked.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from hw.params import EngineParams
from pyioso import output
from pyioso.integer.layer_case import build_case
from sim import layer as sim_layer, runner


def run(name: str) -> dict:
    params = EngineParams()
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(runner, "BUILD_ROOT", Path(tmp)):
        start = time.perf_counter()
        sim_layer.engine_simulator(params)
        build_seconds = time.perf_counter() - start
    sim = sim_layer.engine_simulator(params)          # the cached build for the layer run
    case = build_case(name, batch=1)
    start = time.perf_counter()
    result, sim_seconds = sim_layer.simulate(sim, case.layer, case.x)
    rep = sim_layer.report(name, case.layer, [case.x], result, sim, sim_seconds)
    total = time.perf_counter() - start
    return {"layer": name, "clean_build_seconds": build_seconds, "layer_wall_seconds": total,
            "simulator_seconds": sim_seconds, "cycles": rep["cycles"],
            "cycles_per_second": rep["cycles"] / sim_seconds, "outputs_checked": rep["outputs_checked"],
            "mismatches": rep["mismatches"], "passes": rep["passes"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.bench", description=__doc__)
    parser.add_argument("--layer", default="resnet50_l3")
    args = parser.parse_args(argv)
    res = run(args.layer)
    output.write_json(str(runner.ROOT / "build" / "bench" / "sim.json"), res)
    print(output.table(["measure", "value"], [
        ["engine build from empty folder", f"{res['clean_build_seconds']:.1f} s"],
        [f"{res['layer']} end to end ({res['outputs_checked']:,} outputs checked)", f"{res['layer_wall_seconds']:.1f} s"],
        ["of which the simulator", f"{res['simulator_seconds']:.1f} s"],
        ["engine compute cycles (CYCLES counters)", f"{res['cycles']:,}"],
        ["compute cycles per simulator second", f"{res['cycles_per_second']:,.0f}"],
        ["mismatches", str(res["mismatches"])],
    ], left=1))
    print("target: <= 15 s for the layer after the build")
    return 1 if res["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
