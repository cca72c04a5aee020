"""`make verilog`: the engine as Verilog plus a JSON of its parameters, reproducibly, linted.

Writes build/verilog/engine.v (hw/verilog.py: no source locations, no local paths, so the same
sources give the same bytes on every machine) and engine.json (build parameters, derived widths,
scratchpad depths, host protocol, lint waivers), then runs `verilator --lint-only -Wall` with
the waivers of sim/runner.py. `--no-isg` writes the engine built without the IOSO unit beside it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from golden.errors import PyiosoError
from hw.engine import Engine
from hw.host import Depths
from hw.params import EngineParams
from hw.verilog import describe, to_verilog
from pyioso import output
from pyioso.cli.types import positive_int
from sim import runner

OUT = runner.ROOT / "build" / "verilog"


def write(name: str, params: EngineParams, depths: Depths = Depths()) -> Path:
    text = to_verilog(Engine(params, depths), "engine")
    path = OUT / f"{name}.v"
    output.atomic_write(str(path), lambda f: f.write(text.encode()))
    output.write_json(str(OUT / f"{name}.json"),
                      {**describe(params, depths), "lint_waivers": runner.LINT_WAIVERS})
    runner.lint_verilog(path, "engine")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.verilog", description=__doc__)
    parser.add_argument("--no-isg", action="store_true", help="also write engine_no_isg.v")
    parser.add_argument("--lanes", type=positive_int, default=EngineParams().lanes)
    args = parser.parse_args(argv)
    try:
        builds = [("engine", EngineParams(lanes=args.lanes))]
        if args.no_isg:
            builds.append(("engine_no_isg", EngineParams(lanes=args.lanes, isg=False)))
        for name, params in builds:
            path = write(name, params)
            print(f"{path.relative_to(runner.ROOT)}: {path.stat().st_size:,} bytes, lint clean "
                  f"(waived: {', '.join(runner.LINT_WAIVERS)})")
    except (PyiosoError, runner.SimulationError) as err:
        print(f"verilog: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
