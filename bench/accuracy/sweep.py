"""`make bench-sweep`: one setting (resnet18 W2A4 at 32 px) calibrated at growing budgets, to find
where the baselines stop improving and what IOSO gains there.

Each budget gives weight-stage iterations N and activation-stage iterations N/4 (the paper's
20,000/5,000 ratio). The cells are bench-accuracy's own, recorded under OUT/<budget>/cells with
every block's loss, so the sweep resumes per cell (and per block for long cells), and its cells
serve a bench-accuracy run at the same budget. Cells run cheapest first: seed 0 at every budget,
and the extra seeds at --seeds-at once the budgets below it are done; extra seeds recorded at
another budget (a run with that --seeds-at) are reported too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from bench.accuracy.__main__ import _parse_bits, _weights
from bench.accuracy.cells import (Budget, Cell, add_eval_images, add_run_options, bits_label, checkpoint_of,
                                  committed_records, merge_records, place, run_grid, usual_checkpoint)
from bench.accuracy.report import RESUMED_TIME, paired, signed, spread
from golden.errors import PyiosoError
from pyioso import output
from pyioso.calib import calibrate, plots, workflow
from pyioso.cli.types import positive_int
from pyioso.models import train

METHODS = ("brecq", "qdrop", "brecq+ioso", "qdrop+ioso")
BUDGETS = (200, 1000, 5000, 20000)
PNG = "sweep.png"
HELD_OUT_PNG = "sweep_held_out.png"
IMAGES_PNG = "sweep_images.png"
RECORDS = "sweep.json"      # every recorded cell, committed beside SWEEP.md: a clone resumes from it
# A budget that adds less top-1 than this to the one before ends a method's improvement: the size of
# the spread three seeds give at one budget (0.11-0.69 pp at 5,000 in docs/SWEEP.md).
PLATEAU_PP = 0.5


def plan(net: str, bits: tuple[int, int | None], methods: tuple[str, ...], budgets: tuple[int, ...],
         seeds: int, seeds_at: int, base: Budget = Budget()) -> list[tuple[Budget, Cell]]:
    """(budget, cell) pairs, cheapest first; `base` gives what every budget shares."""
    pairs = [(replace(base, iters=iters, act_iters=iters // 4), Cell(net, *bits, method, seed))
             for iters in budgets for seed in range(seeds if iters == seeds_at else 1) for method in methods]
    return sorted(pairs, key=lambda pair: (pair[0].iters, pair[1].seed))


def _final_losses(record: dict) -> dict[str, float]:
    """Each block's loss after the last stage that reconstructed it, in the network's order."""
    return {entry["segment"]: entry["loss_after"] for entry in record["losses"]}


def final_loss(record: dict) -> float:
    """The network's reconstruction loss when calibration ended, summed over blocks."""
    return sum(_final_losses(record).values())


def _head_share(records: list[dict]) -> str:
    """The range of the network's last segment's (the classifier's) share of final_loss, e.g.
    'fc: 43-80%'."""
    shares = []
    for r in records:
        last = _final_losses(r)
        head = list(last)[-1]
        shares.append(100 * last[head] / final_loss(r))
    return f"{head}: {min(shares):.0f}-{max(shares):.0f}%" if shares else "–"


SPLITS = {"calibration": "calibration images", "held_out": "held-out images", "test": "test images"}


def _split_losses(record: dict) -> dict[str, float]:
    """A finished network's final loss summed over blocks on each split it was measured on
    (calibration, held-out training images and, in cells recorded since it existed, test images)."""
    return {split: sum(record["generalization"][split].values()) for split in SPLITS
            if split in record["generalization"]}


def _held_out_ratio(losses: dict[str, float]) -> float:
    return losses["held_out"] / losses["calibration"]


def generalization_rows(records: list[dict], methods: tuple[str, ...]) -> list[tuple[str, int, list[dict]]]:
    """(method, budget, [each split's loss and 'top1' per seed]) for the cells that measured their
    final loss on held-out images, summed over blocks."""
    rows = []
    for iters in sorted({r["budget"]["iters"] for r in records}):
        for method in methods:
            mine = [r for r in records if r["method"] == method and r["budget"]["iters"] == iters
                    and "generalization" in r]
            if mine:
                rows.append((method, iters, [{**_split_losses(r), "top1": r["fake_quant"]} for r in mine]))
    return rows


def _mean_of(seeds: list[dict], key: str, digits: str = ".4g") -> str:
    """The mean of `key` over the seeds that measured it ('–' where none did)."""
    values = [s[key] for s in seeds if key in s]
    return format(statistics.fmean(values), digits) if values else "–"


def _generalization(records: list[dict], methods: tuple[str, ...], docs: Path) -> list[str]:
    """The held-out section of SWEEP.md: the table and its plot (nothing before any cell measured it)."""
    rows = generalization_rows(records, methods)
    if not rows:
        return []
    splits = [split for split in SPLITS if any(split in s for _, _, v in rows for s in v)]
    table = [[m, f"{i:,}", len(v), *(_mean_of(v, split) for split in splits),
              f"{statistics.fmean(map(_held_out_ratio, v)):.3f}", _mean_of(v, "top1", ".2f")]
             for m, i, v in rows]
    largest = max(i for _, i, _ in rows)
    panels = []
    for family in ("brecq", "qdrop"):
        mine = [(m, v) for m, i, v in rows if i == largest and m.split(" (")[0].split("+")[0] == family]
        if mine:        # a split shown where every method of the panel measured it
            panels.append((f"{family} family, {largest:,} iterations", [m for m, _ in mine],
                           {label: [[s[split] for s in v] for _, v in mine] for split, label in SPLITS.items()
                            if all(split in s for _, v in mine for s in v)}))
    plots.grouped_bars(panels, docs / HELD_OUT_PNG, "final loss, summed over blocks", percent=False)
    held_out = Budget(**records[0]["budget"]).held_out
    return ["## Held-out reconstruction loss",
            "Does a lower reconstruction loss carry over to images the calibration never saw? Each finished "
            "network's loss per block (inputs as its last stage sees them), measured alike on its "
            f"{records[0]['budget']['images']:,} calibration images, on the next {held_out:,} training images "
            f"of the same seeded draw and on {held_out:,} test images (the split top-1 is measured on; cells "
            "recorded before this measurement existed have none), summed over blocks. A held-out ÷ calibration "
            "ratio that grows with a method is that method fitting its calibration images; a test loss that "
            "falls while top-1 falls is the loss no longer tracking top-1. Compare within a family: BRECQ's "
            "last stage measures L_2.4, QDrop's L_2. Cells recorded before the held-out measurement existed "
            "are not in the table.",
            output.md_table(["method", "iterations", "seeds", *(f"{SPLITS[split].split()[0]} loss" for split in splits),
                             "held-out ÷ calibration", "top-1 %"], table),
            f"![calibration and held-out loss per method]({HELD_OUT_PNG})"]


def _top1(records: list[dict], method: str, iters: int) -> dict[int, float]:
    """Top-1 per seed of one method at one budget."""
    return {r["seed"]: r["fake_quant"] for r in records if r["method"] == method and r["budget"]["iters"] == iters}


def _steps(records: list[dict], method: str) -> list[tuple[int, int, list[float]]]:
    """(budget, next measured budget, top-1 it adds per seed measured at both) for each step of one
    method: a mean over 3 seeds at one budget against 1 at the next would step by one seed's luck."""
    budgets = [i for i in sorted({r["budget"]["iters"] for r in records}) if _top1(records, method, i)]
    return [(a, b, paired(_top1(records, method, b), _top1(records, method, a)))
            for a, b in zip(budgets, budgets[1:])]


def plateau(records: list[dict], method: str) -> tuple[int, list[float]] | None:
    """(budget, top-1 the next measured budget adds per seed): the first budget whose next one adds
    under PLATEAU_PP on the mean of the seeds both ran; None while every step adds more."""
    return next(((a, added) for a, _, added in _steps(records, method)
                 if added and statistics.fmean(added) < PLATEAU_PP), None)


def ioso_gain(records: list[dict], method: str, iters: int) -> list[float]:
    """IOSO's top-1 gain over `method` at one budget, one per seed both ran."""
    base, _, checkpoint = method.partition(" (")
    return paired(_top1(records, f"{base}+ioso" + (f" ({checkpoint}" if checkpoint else ""), iters),
                   _top1(records, method, iters))


def _convergence(records: list[dict], methods: tuple[str, ...], budgets: list[int]) -> list[str]:
    """Where each baseline stops improving and what IOSO gains there: the section the budget sweep
    exists for."""
    bases = [m for m in methods if "+ioso" not in m]
    steps = [[m, *(signed(added.get((i, j), [])) for i, j in zip(budgets, budgets[1:]))]
             for m in methods for added in [{(a, b): d for a, b, d in _steps(records, m)}]]
    gains = [[m, *(signed(ioso_gain(records, m, i)) for i in budgets)] for m in bases]
    lines = []
    for m in bases:
        stop = plateau(records, m)
        if stop:
            lines.append(f"- {m}: stops improving at {stop[0]:,} (the next budget adds "
                         f"{signed(stop[1], ' pp')}); IOSO's gain there "
                         f"{signed(ioso_gain(records, m, stop[0]), ' pp')}")
        elif measured := _steps(records, m):
            before, last, added = measured[-1]
            lines.append(f"- {m}: not yet measured to stop; from {before:,} to its largest budget, {last:,}, it "
                         f"gains {signed(added, ' pp')}; IOSO's gain there "
                         f"{signed(ioso_gain(records, m, last), ' pp')}")
    return ["## Where the baselines stop improving, and IOSO's gain there",
            f"A method stops improving at the first budget after which the next adds under {PLATEAU_PP} pp of "
            "top-1, the size of the seeds' spread at one budget (the ± above). Both figures are paired by seed "
            "(one seed draws the same calibration images and batches everywhere): a step is the top-1 the next "
            "budget adds on each seed measured at both budgets, IOSO's gain is method+ioso minus method on each "
            "seed that ran both, and each shows the mean ± std of its pairs where several seeds give one.",
            "\n".join(lines) or "–",
            "### Top-1 gained over the budget before (pp)",
            output.md_table(["method", *(f"{i} → {j}" for i, j in zip(budgets, budgets[1:]))], steps),
            "### IOSO's gain (pp)",
            output.md_table(["over", *(f"{i} / {i // 4}" for i in budgets)], gains)]


def _image_counts(records: list[dict], others: list[dict], methods: tuple[str, ...], docs: Path) -> list[str]:
    """The calibration-images section of SWEEP.md (nothing before a run with another --images):
    at each budget where one ran, each method's top-1 and held-out ÷ calibration loss per image
    count and IOSO's gain, paired by seed, with its plot."""
    if not others:
        return []
    rows, gains, panels = [], [], []
    for iters in sorted({r["budget"]["iters"] for r in others}):
        at_budget = [r for r in records + others if r["budget"]["iters"] == iters]
        counts = sorted({r["budget"]["images"] for r in at_budget})
        by_count = {n: [r for r in at_budget if r["budget"]["images"] == n] for n in counts}
        shown = [m for m in methods if any(r["method"] == m for r in at_budget)]
        for method in shown:
            for n, mine in by_count.items():
                if top1 := [r["fake_quant"] for r in mine if r["method"] == method]:
                    ratio = [_held_out_ratio(_split_losses(r)) for r in mine
                             if r["method"] == method and "generalization" in r]
                    rows.append([method, f"{iters:,}", f"{n:,}", _stat(top1),
                                 f"{statistics.fmean(ratio):.3f}" if ratio else "–"])
        gains += [[m, f"{iters:,}", f"{n:,}", signed(ioso_gain(mine, m, iters))]
                  for m in shown if "+ioso" not in m for n, mine in by_count.items() if any(r["method"] == m for r in mine)]
        panels.append((f"{iters:,} / {iters // 4:,} iterations", shown,
                       {f"{n:,} images": [[r["fake_quant"] for r in mine if r["method"] == m] for m in shown]
                        for n, mine in by_count.items()}))
    plots.grouped_bars(panels, docs / IMAGES_PNG)
    return ["## Calibration images",
            "Whether a budget's result is limited by the calibration images: the cells a run with another "
            "`--images` recorded at the same budget (reported here, never run by this command), beside this "
            f"sweep's. The held-out images are the {Budget(**others[0]['budget']).held_out:,} training images that "
            "follow each run's calibration images in the seeded draw; IOSO's gain is paired by seed as above.",
            output.md_table(["method", "iterations", "calibration images", "top-1 %", "held-out ÷ calibration"], rows),
            output.md_table(["IOSO's gain over", "iterations", "calibration images", "pp"], gains),
            f"![top-1 per method and calibration images]({IMAGES_PNG})"]


def _stat(values: list[float]) -> str:
    return spread(values) + (f" ({len(values)} seeds)" if len(values) > 1 else "")


def by_checkpoint(records: list[dict], methods: tuple[str, ...]) -> tuple[list[dict], tuple[str, ...], list[str]]:
    """Budgets compare only on one checkpoint (training is byte-identical per CPU model, not across):
    the records with each method relabelled 'method (checkpoint ...)' off the checkpoint most cells
    used, the row labels, and a line per checkpoint."""
    main = usual_checkpoint(records)
    counts = {c: sum(r["checkpoint"] == c for r in records) for c in dict.fromkeys(r["checkpoint"] for r in records)}

    def label(method: str, checkpoint: str) -> str:
        return method if checkpoint == main else f"{method} (checkpoint {checkpoint[:8]})"

    relabelled = [{**r, "method": label(r["method"], r["checkpoint"])} for r in records]
    rows = tuple(label(m, c) for c in counts for m in methods
                 if any(r["checkpoint"] == c and r["method"] == m for r in records))
    lines = [f"`{c[:8]}`{' (unlabelled rows)' if c == main else ''}: float top-1 "
             f"{', '.join(f'{f:.2f}' for f in sorted({r['float'] for r in records if r['checkpoint'] == c}))} %, "
             f"{n} calibration{'s' if n > 1 else ''}" for c, n in counts.items()]
    return relabelled, rows, lines


def report(records: list[dict], methods: tuple[str, ...], docs: Path, command: str, planned: int,
           out: str, images: int = Budget.images) -> Path:
    """docs/SWEEP.md and its plots, from the records alone (every committed record is kept in
    sweep.json; the tables show `methods`, a row per method and checkpoint, on `images`
    calibration images; other image counts get a section of their own)."""
    docs.mkdir(parents=True, exist_ok=True)
    output.write_json(str(docs / RECORDS), records)
    records = [r for r in records if r["method"] in methods]
    records, methods, checkpoints = by_checkpoint(records, methods)
    others = [r for r in records if r["budget"]["images"] != images]
    records = [r for r in records if r["budget"]["images"] == images]
    budgets = sorted({r["budget"]["iters"] for r in records})
    net, bits = (records[0]["net"], records[0]["bits"]) if records else ("resnet18", "W2A4")

    def cell(method: str, iters: int, key, seed: int | None = None) -> list[float]:
        return [key(r) for r in records if r["method"] == method and r["budget"]["iters"] == iters
                and seed in (None, r["seed"])]

    top1 = [[m, *(_stat(cell(m, i, lambda r: r["fake_quant"])) for i in budgets)] for m in methods]
    first = min((r["seed"] for r in records), default=0)      # the seed every budget runs
    loss = [[m, *(f"{v[0]:.4g}" if (v := cell(m, i, final_loss, first)) else "–" for i in budgets)]
            for m in methods]
    minutes = [[m, *(f"{statistics.fmean(v) / 60:.1f}" if (v := cell(m, i, lambda r: r["calib_seconds"])) else "–"
                     for i in budgets)] for m in methods]
    heads = ["method", *(f"{i} / {i // 4}" for i in budgets)]
    plots.budget_sweep(records, methods, final_loss, docs / PNG)
    sections = [
        f"# Budget sweep: {net} {bits} at {records[0]['budget']['size'] if records else 32} px",
        "How far the block reconstruction's iteration budget moves each method: weight-stage iterations "
        "per block / activation-stage iterations per block (QDrop and qdrop+ioso: one joint stage of the "
        "first length). Same checkpoint per row, calibration images (drawn by the seed), batch 32 and test images "
        f"at every budget: {', '.join(sorted({str(r['budget']['images']) + ' calibration / ' + str(r['images']) + ' test' for r in records}))}. "
        "One seed per budget unless the cell says more.",
        f"Produced by `{command}` (bench/accuracy/sweep.py); {len(records)} calibrations recorded ({planned} "
        f"planned per checkpoint); each record ({out}/<budget>/cells while it runs, committed in {RECORDS}) "
        "holds every block's loss before and after each stage. The extra seeds run at `--seeds-at`, the largest "
        "budget whose three seeds this 2-core CPU affords (the minutes table at the end).",
        "Checkpoints (pyioso train's, SHA-256 prefix; a row off the first is a retraining on another CPU "
        "model, so compare its budgets with each other only):",
        "\n".join(f"- {line}" for line in checkpoints) or "–",
        "## Top-1 % (fake-quant)", output.md_table(heads, top1),
        "## Final reconstruction loss",
        f"Seed {first} (the seed every budget runs; the plot adds the other seeds as crosses): each "
        "block's loss as its last stage ended, on that stage's 256 loss images, summed over the blocks. The "
        f"classifier's logits carry much of the sum ({_head_share(records)} of it over these cells). Compare a method across budgets, "
        "not methods with each other: BRECQ's last stage measures the activation stage's L_2.4 error, QDrop's "
        "its joint stage's L_2 error. The held-out table further down measures the finished network instead, "
        "every block on all the calibration images with the inputs the later blocks' calibration left it, "
        "so its figures differ from these.",
        output.md_table(heads, loss),
        f"![top-1 and final loss against iterations]({PNG})",
        *_convergence(records, methods, budgets),
        *_generalization(records, methods, docs),
        *_image_counts(records, others, methods, docs),
        "## Calibration minutes (one thread)",
        "Wall minutes as recorded, means over a budget's seeds: other benchmarks shared the 2 cores (how many "
        f"varied), and {RESUMED_TIME}; so compare orders of magnitude, not ratios.",
        output.md_table(heads, minutes),
    ]
    path = docs / "SWEEP.md"
    output.atomic_write(str(path), lambda f: f.write(("\n\n".join(sections) + "\n").encode()))
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.accuracy.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", default="resnet18", help="network (default: resnet18)")
    p.add_argument("--bits", default="W2A4", help="WxAy (default: W2A4)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated (default: {','.join(METHODS)})")
    p.add_argument("--iters", default=",".join(map(str, BUDGETS)),
                   help="comma-separated weight-stage budgets; activation stage a quarter (default: "
                        f"{','.join(map(str, BUDGETS))})")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds at --seeds-at (default: 3)")
    p.add_argument("--seeds-at", type=positive_int, default=5000,
                   help="the budget that runs every seed, the largest this machine affords (default: 5000)")
    p.add_argument("--weights", default=train.TRAINED,
                   help=f"'{train.TRAINED}' (pyioso train's checkpoint, trained when missing), 'random' (smoke) "
                        "or a state_dict file (default: trained)")
    p.add_argument("--size", type=positive_int, default=Budget.size, help="input pixels (default: 32)")
    p.add_argument("--images", type=positive_int, default=Budget.images, help="calibration images (default: 1024)")
    add_eval_images(p)
    add_run_options(p, "SWEEP.md", jobs=1)
    args = p.parse_args(argv)
    try:
        bits = _parse_bits(args.bits)
        methods = tuple(args.methods.split(","))
        for method in methods:
            calibrate.Config.named(method)
        try:
            budgets = tuple(sorted({int(i) for i in args.iters.split(",")}))
        except ValueError:
            raise PyiosoError(f"--iters {args.iters!r}: write comma-separated counts, e.g. 200,1000") from None
        if min(budgets) < 4:
            raise PyiosoError(f"--iters {args.iters}: every budget needs at least 4 iterations (a quarter for "
                              "the activation stage)")
        net = train.Recipe(args.net).check().net
        base = Budget(images=args.images, eval_images=args.eval_images, size=args.size)
        pairs = plan(net, bits, methods, budgets, args.seeds, args.seeds_at, base)
        weights = _weights(args.weights, [net], base, not args.quiet, set() if args.report_only else {net})
        committed = committed_records(Path(args.docs) / RECORDS)     # this checkpoint's run no more
        checkpoint = checkpoint_of(weights[net])
        mine = {(r["key"], Budget(**r["budget"])): r for r in committed if r["checkpoint"] == checkpoint}
        records = []
        for budget in sorted({b for b, _ in pairs}, key=lambda b: b.iters):
            cells = [c for b, c in pairs if b == budget]
            out = Path(args.out) / budget.folder
            for cell in cells:
                if "losses" not in (cell.stored(out) or {"losses": None}):
                    cell.record(out).unlink()       # recorded before losses were logged: run again
                if (cell.key, budget) in mine:      # this machine's: it replaces another checkpoint's
                    place(cell, out, mine[cell.key, budget], rewrite=True)
            if not args.quiet:
                print(f"budget {budget.iters}/{budget.act_iters}: {len(cells)} cells", file=sys.stderr)
            records += run_grid(cells, budget, weights, out, args.jobs, not args.quiet,
                                not args.report_only, args.ray)
            # seeds a run with another --seeds-at recorded here: reported (paired steps), never run; not
            # the quick benchmark's extra seeds, recorded before block losses were logged
            extra = [Cell(net, *bits, method, seed) for seed in range(args.seeds) for method in methods]
            records += [r for r in run_grid([c for c in extra if c not in cells], budget, weights, out,
                                            run=False, progress=False) if "losses" in r]
            for other in budget.other_images(Path(args.out)):     # a run with another --images: reported alike
                records += [r for r in run_grid(extra, other, weights, Path(args.out) / other.folder,
                                                run=False, progress=False) if "losses" in r]
        command = " ".join(["python -m bench.accuracy.sweep", *(sys.argv[1:] if argv is None else argv)])
        records = merge_records(committed, records)
        path = report(records, methods, Path(args.docs), command.replace(" --report-only", ""), len(pairs),
                      args.out, args.images)
    except PyiosoError as err:
        sys.exit(f"error: {err}")
    print(f"wrote {path} ({len(records)} calibrations, {bits_label(*bits)})")


if __name__ == "__main__":
    main()
