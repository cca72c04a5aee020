"""`python -m sim.net`: every conv/FC layer of an integer network through the engine RTL.

The network (pyioso.integer.rtn, or an artifact's) runs once in golden on one held-out image (a
Fashion-MNIST photo; an artifact's: of the data it was calibrated on, where present); then every
conv/FC layer is replayed on the engine (one build, reused) with its golden input codes, i.e. the
golden output of the layers before it, so a layer's check does not depend on the RTL of the
others. Every output code is compared bit for bit, every CYCLES counter with the cycle model.
Layers the engine refuses are listed with the reason. Writes build/sim/<net>_<size>/summary.json
(an artifact's: build/sim/<net>_<size>px_<digest>/summary.json);
exits 1 on any mismatch (outputs or cycles), 2 on an error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from tqdm import tqdm

from golden.errors import PyiosoError
from hw import driver
from hw.params import EngineParams
from pyioso import output
from pyioso.cli.types import nonnegative_int, positive_int
from pyioso.data.datasets import sample_photos
from pyioso.integer import artifact, intnet, rtn
from pyioso.lowering.plan import EDGE_BITS
from pyioso.models import tv, zoo
from sim import layer, runner

HEADERS = ("layer", "shape", "bits", "outputs", "mismatches", "cycles", "model", "ideal",
           "utilization", "sim s")


def golden_runs(net: str, size: int, w_bits: int, a_bits: int, seed: int) -> list[intnet.LayerRun]:
    """The network's conv/FC layers with their golden input and output codes on one image."""
    model = rtn.build(net, size, w_bits, a_bits, seed)
    image = sample_photos(1, size, seed + 1)     # not one of the calibration images
    return model.forward(model.quantize_input(image), record=True)[1]


def refusal(run: intnet.LayerRun, params: EngineParams) -> str | None:
    """Why the engine cannot run this layer, or None if it can."""
    try:
        driver.plan(run.layer, run.x, params)
    except PyiosoError as err:
        return str(err)
    return None


def simulate_runs(runs: list[intnet.LayerRun], params: EngineParams,
                  progress: bool = True) -> tuple[list[dict], list[dict]]:
    """(sim.layer reports of the layers the engine runs, {layer, reason} of those it refuses)."""
    reasons = {run.path: refusal(run, params) for run in runs}
    skipped = [{"layer": path, "reason": why} for path, why in reasons.items() if why]
    todo = [run for run in runs if not reasons[run.path]]
    reports = []
    if todo:
        sim = layer.engine_simulator(params)
        for run in (bar := tqdm(todo, desc="engine RTL", unit="layer", disable=not progress)):
            bar.set_postfix_str(run.path)
            result, seconds = layer.simulate(sim, run.layer, run.x)
            reports.append(layer.report(run.path, run.layer, [run.x], result, sim, seconds))
    return reports, skipped


def totals(reports: list[dict]) -> dict:
    add = lambda key: sum(r[key] for r in reports)  # noqa: E731
    cycles, ideal = add("cycles"), add("ideal_cycles")
    return {"layers": len(reports), "outputs_checked": add("outputs_checked"),
            "mismatches": add("mismatches"), "cycles": cycles, "ideal_cycles": ideal,
            "model_disagreements": sum(not layer.model_agrees(r) for r in reports),
            "utilization": ideal / cycles if cycles else 0.0,
            "sim_wall_seconds": add("sim_wall_seconds")}


def _model(rep: dict) -> str:
    """The cycle model next to the RTL counter: '=' when equal, else its value (or n/a)."""
    if rep["model_cycles"] is None:
        return "n/a"
    return "=" if rep["model_cycles"] == rep["cycles"] else output.fmt_int(rep["model_cycles"])


def _row(name, shape, bits, outputs, mismatches, cycles, model, ideal, utilization, seconds) -> list:
    return [name, shape, bits, output.fmt_int(outputs), mismatches, output.fmt_int(cycles), model,
            output.fmt_int(ideal), output.percent(utilization), f"{seconds:.1f}"]


def summary_table(reports: list[dict], total: dict) -> str:
    rows = []
    for r in reports:
        s, b = r["shape"], r["bits"]
        shape = f"{s['h']}x{s['w']}x{s['c_in']}->{s['c_out']} k{s['kernel'][0]} s{s['stride'][0]}"
        shape += f" g{s['groups']}" if s["groups"] > 1 else ""
        rows.append(_row(r["layer"], shape, f"W{b['weights']}A{b['activations']}->A{b['outputs']}",
                         r["outputs_checked"], r["mismatches"], r["cycles"], _model(r),
                         r["ideal_cycles"], r["utilization"], r["sim_wall_seconds"]))
    disagree = total["model_disagreements"]
    rows.append(_row("total", f"{total['layers']} layers", "", total["outputs_checked"],
                     total["mismatches"], total["cycles"], f"{disagree} off" if disagree else "=",
                     total["ideal_cycles"], total["utilization"], total["sim_wall_seconds"]))
    return output.table(HEADERS, rows, left=3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.net", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=zoo.networks_help())
    parser.add_argument("--net", help="a network built with seeded weights (or --artifact)")
    parser.add_argument("--artifact", help="a calibrated artifact directory: its network, tables "
                        "and real activations")
    parser.add_argument("--size", type=positive_int, default=224, help="input image size (default 224)")
    parser.add_argument("--wbits", type=positive_int, default=4, help="weight bits of the inner layers")
    parser.add_argument("--abits", type=positive_int, default=4, help="activation bits of the inner layers")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="network weights and images")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    params = EngineParams()
    try:
        if args.artifact:
            doc, runs, image = artifact.layer_runs(args.artifact, args.seed + 1)
            config = doc.get("calibration", {}).get("config", {})
            name, args.size = artifact.label(doc), doc["network"]["size"]
            bits = {"weights": config.get("w_bits"), "activations": config.get("a_bits")}
        elif args.net:
            net = tv.check_network(args.net)
            runs = golden_runs(net, args.size, args.wbits, args.abits, args.seed)
            name, bits = f"{net}_{args.size}", {"weights": args.wbits, "activations": args.abits}
            image = f"Fashion-MNIST test photo: sample_photos(1, {args.size}, seed={args.seed + 1})"
        else:
            raise PyiosoError("give --net NAME or --artifact DIR")
        reports, skipped = simulate_runs(runs, params)
    except (PyiosoError, runner.SimulationError) as err:
        print(f"sim: error: {err}", file=sys.stderr)
        return 2
    total = totals(reports)
    wall = time.perf_counter() - start
    print(summary_table(reports, total))
    for s in skipped:
        print(f"skipped {s['layer']}: {s['reason']}")
    for r in reports:
        if not layer.passed(r):
            print(layer.verdict(r))
    path = runner.ROOT / "build" / "sim" / name / "summary.json"
    output.write_json(str(path), {
        "net": name, "artifact": args.artifact, "size": args.size, "seed": args.seed,
        "bits": {**bits, "first_and_last_layers": EDGE_BITS}, "image": image,
        "engine": json.loads(params.to_json()), "layers": reports, "skipped": skipped,
        "totals": total, "wall_seconds": wall})
    print(f"{total['layers']} layers simulated, {len(skipped)} skipped, {total['mismatches']} "
          f"mismatches, {total['model_disagreements']} cycle-model disagreements, wall "
          f"{wall:.0f} s; summary: {path.relative_to(runner.ROOT)}")
    return 1 if total["mismatches"] or total["model_disagreements"] else 0


if __name__ == "__main__":
    sys.exit(main())
