"""`python -m bench.accuracy`: plan the grid, reuse, train what is missing, run, report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.accuracy.cells import METHODS, Budget, add_eval_images, grid, run_grid
from bench.accuracy.records import forget_other_checkpoints, reuse
from bench.accuracy.report import report, targets
from golden.errors import PyiosoError
from pyioso import parallel
from pyioso.calib import calibrate
from pyioso.cli.types import nonnegative_int, positive_int
from pyioso.data.datasets import FASHION
from pyioso.models import train
from pyioso.models.train import TRAINED
from pyioso.models.weights import RANDOM


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", default="resnet18",
                   help="comma-separated networks, each on every --bits setting or, written "
                        "NET:W2A4+W4A4, on its own (default: resnet18)")
    p.add_argument("--weights", default=TRAINED,
                   help=f"'{TRAINED}' (pyioso train's checkpoints, trained when missing), '{RANDOM}' (smoke), "
                        "or the user's state_dicts: PATH for one network, NET=PATH,NET=PATH for several")
    p.add_argument("--data", default=FASHION,
                   help=f"'{FASHION}' or an ImageFolder directory (train/ and val/ inside; default: {FASHION})")
    p.add_argument("--classes", type=positive_int, default=train.CLASSES, help="classes of the networks (default: 10)")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds of the calibration draw (default: 3)")
    p.add_argument("--iters", type=nonnegative_int, default=Budget.iters, help=f"weight-stage iterations (default: {Budget.iters})")
    p.add_argument("--act-iters", type=nonnegative_int, default=Budget.act_iters,
                   help=f"activation-stage iterations (default: {Budget.act_iters})")
    p.add_argument("--images", type=positive_int, default=Budget.images, help="calibration images (default: 1024)")
    add_eval_images(p)
    p.add_argument("--size", type=positive_int, default=Budget.size, help="input pixels (default: 32)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default: all)")
    p.add_argument("--bits", default="W2A4,W4A4,W3A3,W2A2,W2A32,W3A32,W4A32",
                   help="comma-separated WxAy (A32: weights only), run in this order (default: the "
                        "paper's seven, the targets' first)")
    p.add_argument("--report-only", action="store_true",
                   help="write the report from the cells recorded so far, run nothing")
    p.add_argument("--reuse", metavar="DIR",
                   help="take the cells (and training records, Fig. 11 data) a report folder or its "
                        "results.csv holds under the same budget instead of running them again (e.g. "
                        "docs, to extend the committed benchmark)")
    p.add_argument("--no-ablation", action="store_true", help="skip the Table 4 ablation")
    p.add_argument("--jobs", type=positive_int, default=2, help="calibrations side by side, one thread each (default: 2)")
    p.add_argument("--ray", help=parallel.RAY_HELP)
    p.add_argument("--out", default="build/bench/accuracy", help="records and runs (default: build/bench/accuracy)")
    p.add_argument("--docs", default="docs", help="where RESULTS.md, results.csv and plots go (default: docs)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        plan = parse_plan(args.nets, tuple(_parse_bits(b) for b in args.bits.split(",")))
        nets = list(plan)
        budget = Budget(args.iters, args.act_iters, args.images, args.eval_images, args.size, args.data,
                        args.classes)
        for method in args.methods.split(","):
            calibrate.Config.named(method)
        cells = grid(plan, args.seeds, tuple(args.methods.split(",")), not args.no_ablation)
        out = Path(args.out) / budget.folder
        reused = reuse(Path(args.reuse), cells, budget, out, args.report_only) if args.reuse else []
        if reused and not args.quiet:
            print(f"reused {len(reused)} recorded calibrations from {args.reuse}")
        to_run = set() if args.report_only else {cell.net for cell in cells if not cell.record(out).is_file()}
        weights = _weights(args.weights, nets, budget, not args.quiet, to_run)
        if reused:
            dropped, unknown = forget_other_checkpoints(Path(args.reuse), reused, weights, to_run, budget.size,
                                                       out)
            for net in dropped:
                print(f"{net}: the checkpoint here is not the one {args.reuse} calibrated (another SHA-256); "
                      "its reused cells run again on this one", file=sys.stderr)
            for net in unknown:
                print(f"warning: {args.reuse} recorded no SHA-256 of {net}'s checkpoint, so its reused cells "
                      "may come from other weights than the new cells", file=sys.stderr)
        records = run_grid(cells, budget, weights, out, args.jobs, not args.quiet, not args.report_only, args.ray)
        command = " ".join(["python -m bench.accuracy", *(sys.argv[1:] if argv is None else argv)])
        command = command.replace(" --report-only", "").replace(" --quiet", "")
        path = report(records, nets, weights, budget, Path(args.docs), command, out, len(cells))
    except PyiosoError as err:
        sys.exit(f"error: {err}")
    print(f"wrote {path} ({len(records)} calibrations)")
    for line in targets(records):
        print(line.replace("**", ""))


def _weights(spec: str, nets: list[str], budget: Budget, progress: bool, to_run: set[str]) -> dict[str, str]:
    """Each network's weights argument for pyioso calibrate. The project's checkpoints are trained
    only for networks with cells to run; the others keep a cached one, or stay 'trained'."""
    if spec == TRAINED:
        weights = {net: train.resolve_weights(spec, net, budget.data, budget.size, progress)
                   for net in nets if net in to_run}
        for net in set(nets) - to_run:
            done = train.cached(train.Recipe(net, size=budget.size)) if budget.data == FASHION else None
            weights[net] = str(done[0]) if done else TRAINED
        return {net: weights[net] for net in nets}
    if spec == RANDOM or "=" not in spec:
        if spec != RANDOM and len(nets) > 1:
            raise PyiosoError(f"--weights {spec}: one file for {len(nets)} networks; write NET=PATH,NET=PATH")
        return dict.fromkeys(nets, spec)
    given = dict(item.split("=", 1) for item in spec.split(","))
    missing = [net for net in nets if net not in given]
    if missing:
        raise PyiosoError(f"--weights names no file for {', '.join(missing)}: add {missing[0]}=PATH")
    return {net: given[net] for net in nets}


def parse_plan(text: str, bits: tuple[tuple[int, int | None], ...]) -> dict[str, tuple]:
    """--nets: NET (on every --bits setting) or NET:WxAy+WxAy (on those only), comma-separated."""
    plan = {}
    for item in text.split(","):
        net, _, own = item.partition(":")
        plan[train.Recipe(net.strip()).check().net] = tuple(map(_parse_bits, own.split("+"))) if own else bits
    return plan


def _parse_bits(text: str) -> tuple[int, int | None]:
    w, _, a = text.strip().upper().removeprefix("W").partition("A")
    try:
        w_bits, a_bits = int(w), int(a)
    except ValueError:
        raise PyiosoError(f"--bits {text!r}: write WxAy, e.g. W2A4 or W4A32") from None
    return w_bits, None if a_bits == 32 else a_bits


if __name__ == "__main__":
    main()
