"""`make report` (`python -m bench.hardware`): synthesis area of the engine and its variants, latency
per layer, and the paper's Table 11 side by side.

Writes build/report/area.json, build/report/latency.json, docs/HARDWARE.md and
docs/hardware_area.png. Libraries: the files given with --liberty (LIBERTY=), else the open PDKs
under --pdk (default ../shared/pdk, relative to the repository), else Yosys's generic counts
(said so on the page). Synthesis results are cached by content in build/report/synth/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.hardware import area, latency, liberty, page
from bench.hardware.variants import BASELINE, engines
from golden.errors import PyiosoError
from hw.host import Depths
from hw.params import EngineParams
from pyioso import output

ROOT = liberty.ROOT


def build(args: argparse.Namespace, depths: Depths = Depths()) -> tuple[dict, dict]:
    """(area.json, latency.json) for the command line's engine size and libraries."""
    out = ROOT / args.out
    variants = engines(args.rows, args.cols, args.lanes)     # refuses a bad size before any work
    libs = liberty.libraries(out / "synth", args.liberty, args.pdk, args.clock_mhz)
    if not libs:
        print(f"no liberty file: neither --liberty nor {args.pdk}/ holds one; areas fall back to "
              "Yosys's generic cell and transistor counts", file=sys.stderr)
    # The RTL layer runs (Verilator, one at a time) go on beside the Yosys runs: the two share
    # the CPUs instead of taking turns.
    with ThreadPoolExecutor(max_workers=1) as beside:
        latency_doc = beside.submit(latency.latency_report, variants, not args.no_sim)
        area_doc = area.area_report(variants, depths, libs, out / "synth", args.jobs, BASELINE)
        return area_doc, latency_doc.result()


def write(args: argparse.Namespace, area_doc: dict, latency_doc: dict) -> list[Path]:
    out = ROOT / args.out
    page_path = ROOT / args.page
    plot_path = page_path.with_name(page_path.stem.lower() + "_area.png")
    whole_path = page_path.with_name(page_path.stem.lower() + "_networks.png")
    timing_path = page_path.with_name(page_path.stem.lower() + "_timing.png")
    output.write_json(str(out / "area.json"), area_doc)
    output.write_json(str(out / "latency.json"), latency_doc)
    page.plot(area_doc, str(plot_path))
    page.whole_network_plot(latency_doc, str(whole_path))
    paths = [out / "area.json", out / "latency.json", page_path, plot_path, whole_path]
    if area_doc["libraries"]:
        page.timing_plot(area_doc, str(timing_path))
        paths.append(timing_path)
    text = page.document(area_doc, latency_doc, plot_path.name, whole_path.name, timing_path.name)
    output.atomic_write(str(page_path), lambda f: f.write(text.encode()))
    return paths


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.hardware", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--liberty", default="", help="liberty file(s), comma-separated, .lib or "
                        ".lib.gz, mapped as one library (default: the open PDKs)")
    parser.add_argument("--clock-mhz", type=float, default=500, help="the common clock the "
                        "variants are mapped for and compared at, for files given with --liberty "
                        "(the open PDKs': asap7 400, sky130hd 50)")
    parser.add_argument("--pdk", default="../shared/pdk", help="directory of the open PDKs, "
                        "relative to the repository (default ../shared/pdk)")
    parser.add_argument("--rows", type=int, default=EngineParams().rows)
    parser.add_argument("--cols", type=int, default=EngineParams().cols)
    parser.add_argument("--lanes", type=int, default=EngineParams().lanes,
                        help="post-processing lanes (paper: 8)")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)),
                        help="Yosys processes at a time (default: the CPUs this process may use)")
    parser.add_argument("--no-sim", action="store_true", help="skip the RTL layer simulations")
    parser.add_argument("--out", default="build/report", help="JSON and cache directory")
    parser.add_argument("--page", default="docs/HARDWARE.md")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give at least 1")
    if not args.clock_mhz > 0:
        parser.error(f"--clock-mhz {args.clock_mhz}: give a frequency above 0")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    start = time.perf_counter()
    try:
        area_doc, latency_doc = build(args)
    except PyiosoError as err:
        print(f"report: error: {err}", file=sys.stderr)
        return 2
    paths = write(args, area_doc, latency_doc)
    print(page.summary(area_doc, latency_doc))
    print("wrote " + ", ".join(str(p.relative_to(ROOT)) for p in paths)
          + f" in {time.perf_counter() - start:.0f} s")
    agreement = latency_doc["agreement"]
    return 0 if agreement["agree"] == agreement["bit_exact"] == agreement["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
