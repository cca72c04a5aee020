"""`make verilog`: the engine as Verilog plus a JSON of its parameters, reproducibly, linted.

Writes build/verilog/engine.v (no source locations, no local paths: the same sources give the
same bytes on every machine) and engine.json (build parameters, derived widths, scratchpad
depths, host protocol), then runs `verilator --lint-only -Wall` with the waivers of
sim/runner.py. `--no-isg` writes the engine built without the IOSO unit beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hw.engine import Engine
from hw.host import Csr, Depths, Space
from hw.params import EngineParams
from pyioso import output
from pyioso.errors import PyiosoError
from sim import runner

OUT = runner.ROOT / "build" / "verilog"


def describe(params: EngineParams, depths: Depths) -> dict:
    return {
        "top": "engine", "params": json.loads(params.to_json()), "depths_words": depths.to_json(),
        "ports": {"cmd": "stream in: {write, space[3], addr[20], data[128]}",
                  "resp": "stream out: data[128], one per read command", "done": "out"},
        "spaces": {s.name: int(s) for s in Space}, "csr": {c.name: int(c) for c in Csr},
        "lint_waivers": runner.LINT_WAIVERS,
    }


def write(name: str, params: EngineParams, depths: Depths = Depths()) -> Path:
    text = runner.to_verilog(Engine(params, depths), "engine")
    path = OUT / f"{name}.v"
    output.atomic_write(str(path), lambda f: f.write(text.encode()))
    output.write_json(str(OUT / f"{name}.json"), describe(params, depths))
    runner.lint_verilog(path, "engine")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw.verilog", description=__doc__)
    parser.add_argument("--no-isg", action="store_true", help="also write engine_no_isg.v")
    parser.add_argument("--lanes", type=int, default=EngineParams().lanes)
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
