"""`make bench-parity`: our `brecq` and `qdrop` against the methods' own code, end to end on the
same resnet18 checkpoint, calibration images, bits and budget, over the same seeds.

Our cells are bench-accuracy's (recorded under OUT/<budget>/cells, so the committed benchmark's
cells serve here and the other way round). Each reference cell runs scripts/reference_ptq.py in its
own process on a copy of the reference code (scripts/fetch_reference.sh) and leaves one JSON record
in OUT/<budget>/parity/, so the comparison resumes per cell. BRECQ's code runs twice: on its own
weight grid (asymmetric, per-channel MSE range) and on ours (symmetric, what the integer engine
runs), to tell the grid apart from the optimization.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from bench.accuracy.__main__ import _parse_bits
from bench.accuracy.cells import Budget, Cell, add_run_options, checkpoint_of, place, run_grid
from bench.accuracy.report import paired, signed, spread
from golden.errors import PyiosoError
from pyioso import output
from pyioso.calib import calibrate, plots
from pyioso.cli.types import nonnegative_int, positive_int
from pyioso.models import train

NET = "resnet18"
METHODS = ("brecq", "qdrop")
GRIDS = ("symmetric", "asymmetric")
REFERENCE_GRIDS = {"own": "asymmetric", "pyioso": "symmetric"}     # Reference.grid -> its grid
GRID_OPTIONS = {"symmetric": (), "asymmetric": (("weight_grid", "asymmetric"),)}   # grid -> Cell options
POINT_OPTIONS = {"engine": (), "reference": (("act_points", "reference"),)}        # --points -> Cell options
PNG = "parity.png"
RECORDS = "parity.json"     # every recorded calibration, committed beside PARITY.md: a clone resumes from it
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Reference:
    """One run of a method's own code."""

    method: str
    w_bits: int
    a_bits: int
    grid: str       # "own" or "pyioso"
    seed: int

    @property
    def key(self) -> str:
        return f"{self.method}_W{self.w_bits}A{self.a_bits}_{self.grid}_s{self.seed}"

    def run(self, budget: Budget, checkpoint: str, out: Path) -> dict:
        record = out / f"{self.key}.json"
        if not record.is_file():
            command = [sys.executable, str(ROOT / "scripts" / "reference_ptq.py"), self.method,
                       "--wbits", str(self.w_bits), "--abits", str(self.a_bits), "--iters", str(budget.iters),
                       "--act-iters", str(budget.act_iters), "--grid", self.grid, "--seed", str(self.seed),
                       "--images", str(budget.images), "--size", str(budget.size), "--checkpoint", checkpoint,
                       "--json", str(record), "--with-parent"]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if done.returncode:
                raise PyiosoError(f"reference run {self.key} failed ({' '.join(command)}):\n"
                                  + done.stderr[-2000:])
        return json.loads(record.read_text())


def references(bits: list[tuple[int, int]], seeds: int, methods=METHODS, grids=GRIDS) -> list[Reference]:
    return [Reference(method, w, a, grid, seed) for w, a in bits for method in methods
            for grid, name in REFERENCE_GRIDS.items() if name in grids for seed in range(seeds)]


# The compared columns: (implementation, weight grid), the grids by pyioso's names for them. POINTS
# is pyioso quantizing only the tensors the reference's code quantizes (--act-points reference).
POINTS = "pyioso at the reference's points"
COLUMNS = tuple((impl, grid) for grid in GRIDS for impl in ("pyioso", POINTS, "reference"))


def _grid(record: dict) -> str:
    return record["options"].get("weight_grid", "symmetric")


def _impl(record: dict) -> str:
    return POINTS if record["options"].get("act_points", "engine") == "reference" else "pyioso"


def rows(ours: list[dict], refs: list[tuple[Reference, dict]]) -> list[dict]:
    """Per method and bits, each (implementation, grid)'s top-1 per seed, and under "seeds" which
    seed each value is. BRECQ's code also reports its top-1 after the weight stage (activations
    float): the WxA32 rows."""
    entries = [(r["method"], r["bits"], _impl(r), _grid(r), r["seed"], r["fake_quant"]) for r in ours]
    for ref, result in refs:
        grid = REFERENCE_GRIDS[ref.grid]
        entries.append((ref.method, f"W{ref.w_bits}A{ref.a_bits}", "reference", grid, ref.seed, result["top1"]))
        if result.get("weight_only") is not None:
            entries.append((ref.method, f"W{ref.w_bits}A32", "reference", grid, ref.seed, result["weight_only"]))
    found = {}
    for method, bits, impl, grid, seed, top1 in entries:
        row = found.setdefault((bits, method), {"method": method, "bits": bits, **{c: [] for c in COLUMNS},
                                                "seeds": {c: [] for c in COLUMNS}})
        row[impl, grid].append(top1)
        row["seeds"][impl, grid].append(seed)
    return sorted(found.values(), key=lambda r: (r["bits"].endswith("A32"), r["bits"], METHODS.index(r["method"])))


def _difference(row: dict, grid: str, impl: str = "pyioso") -> str:
    """Mean difference, marked within or outside the seeds' spread (no larger than the larger of
    the two sides' std) where a side has several seeds."""
    ours, ref = row[impl, grid], row["reference", grid]
    if not (ours and ref):
        return "–"
    difference = statistics.fmean(ours) - statistics.fmean(ref)
    stds = [statistics.stdev(side) for side in (ours, ref) if len(side) > 1]
    verdict = "" if not stds else " (within)" if abs(difference) <= max(stds) else " (outside)"
    return f"{difference:+.2f}{verdict}"


def paired_table(table: list[dict]) -> str:
    """Per setting, pyioso minus the reference on each seed both ran: their mean ± std and on how
    many seeds pyioso is higher; tighter than the two sides' spreads where the seeds' draw moves
    both codes alike."""
    heads = ["method", "bits", "weight grid", "pyioso's points", "pyioso − reference, paired", "pyioso higher"]
    body = []
    for row in table:
        for grid in GRIDS:
            for impl, points in (("pyioso", "engine's"), (POINTS, "reference's")):
                by_seed = [dict(zip(row["seeds"][side, grid], row[side, grid])) for side in (impl, "reference")]
                if differences := paired(*by_seed):
                    body.append([row["method"], row["bits"], grid, points, signed(differences),
                                 f"{sum(d > 0 for d in differences)} of {len(differences)}"])
    return output.md_table(heads, body) if body else "No seed is recorded on both sides yet."


def _weights_line(ours: list[dict]) -> str:
    """Which float network the rows calibrated: its top-1 and, where recorded, its checkpoint."""
    floats = ", ".join(f"{f:.2f}" for f in sorted({r["float"] for r in ours if "float" in r}))
    sums = ", ".join(sorted({f"`{r['checkpoint'][:8]}`" for r in ours if r.get("checkpoint")}))
    return (f"float top-1 {floats}%" if floats else "") + (f", checkpoint {sums}" if sums else "")


def points_table(table: list[dict]) -> str:
    """The quantization-points ablation: pyioso at the engine's points and at the reference's,
    against the reference, per method, bits and grid."""
    heads = ["method", "bits", "weight grid", "pyioso, engine's points", "pyioso, reference's points",
             "reference", "engine's − reference", "reference's points − reference"]
    body = [[row["method"], row["bits"], grid, spread(row["pyioso", grid]), spread(row[POINTS, grid]),
             spread(row["reference", grid]), _difference(row, grid), _difference(row, grid, POINTS)]
            for row in table for grid in GRIDS if row[POINTS, grid]]
    return output.md_table(heads, body) if body else "No calibration at the reference's points is recorded yet."


def report(table: list[dict], budget: Budget, docs: Path, command: str, planned: int, recorded: int,
           ours: list[dict] = ()) -> Path:
    """PARITY.md and its plot from the rows; `ours`, pyioso's records, name the float network."""
    heads = ["method", "bits", *(f"{impl}, {grid}" for grid in GRIDS for impl in ("pyioso", "reference")),
             *(f"pyioso − reference, {grid}" for grid in GRIDS)]
    body = [[row["method"], row["bits"], *(spread(row[impl, grid]) for grid in GRIDS for impl in ("pyioso", "reference")),
             *(_difference(row, grid) for grid in GRIDS)] for row in table]
    docs.mkdir(parents=True, exist_ok=True)
    if table:
        plots.parity(table, list(COLUMNS), docs / PNG)
    text = "\n\n".join([
        "# Baseline parity: our BRECQ and QDrop against their own code",
        f"resnet18 at {budget.size} px (pyioso train's Fashion-MNIST checkpoint"
        + (f"; {line}" if (line := _weights_line(list(ours))) else "") + f"), {budget.images} calibration "
        f"images drawn by the seed, batch 32, {budget.iters} weight-stage / {budget.act_iters} activation-stage "
        "iterations per block (QDrop: one joint stage of the first length), first and last layers 8-bit; top-1 % "
        "on the 10,000 test images, mean ± std over the seeds; a difference is *within* the seeds' spread when "
        "it is no larger than the larger of the two sides' std, *outside* otherwise. The references: BRECQ "
        "github.com/yhhhli/BRECQ at e455d62, QDrop github.com/wimh966/QDrop at ef37616 (its "
        "exp/w2a4/r18/config.yaml with these bits and iterations), run by scripts/reference_ptq.py.",
        "Two weight grids per output channel: **symmetric** (zero point 0, codes -2^(b-1)..2^(b-1)-1: what the "
        "integer engine runs, and pyioso's default; the references run on it with pyioso's MSE scales put into "
        "their quantizers) and **asymmetric** (an integer zero point per channel, MSE-searched range: the "
        "references' own grid; pyioso's `--weight-grid asymmetric`, fake-quant only).",
        "The WxA32 rows are the weight stage alone (activations float): pyioso calibrated with weights only, "
        "BRECQ's code measured after its weight stage, as its main_imagenet.py prints it. They tell a "
        "difference of the weight stage apart from one of the activation stage.",
        f"Produced by `{command}` (bench/accuracy/parity.py); {recorded} of {planned} calibrations recorded.",
        output.md_table(heads, body) if body else "No calibration is recorded yet.",
        *([f"![parity]({PNG})"] if table else []),
        "## Quantization points",
        "pyioso quantizes every tensor the integer engine stores. The references quantize fewer: not the input "
        "image, not the outputs of a block's last conv and downsample before the residual add, not the pooled "
        "vector nor the logits; BRECQ keeps the stem's output at 8 bits (pyioso: the activation bits), QDrop the "
        "last block's output. `--act-points reference` quantizes exactly the reference's tensors (fake-quant "
        "only), so the difference that remains is the method's, not the network's.",
        points_table(table),
        "## Paired by seed",
        "For each seed both sides ran, pyioso's top-1 minus the reference's; mean ± std over those seeds. "
        "A seed fixes the calibration images, so a pair differs only in the code: the seeds' draw, which moves "
        "both sides' top-1 alike, drops out of the difference.",
        paired_table(table)])
    path = docs / "PARITY.md"
    output.atomic_write(str(path), lambda f: f.write((text + "\n").encode()))
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.accuracy.parity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bits", default="W2A4,W4A4", help="comma-separated WxAy (default: W2A4,W4A4)")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds of each setting (default: 3)")
    p.add_argument("--iters", type=positive_int, default=Budget.iters,
                   help=f"weight-stage iterations per block (default: {Budget.iters})")
    p.add_argument("--act-iters", type=nonnegative_int, default=Budget.act_iters,
                   help=f"activation-stage iterations per block (default: {Budget.act_iters})")
    p.add_argument("--methods", default=",".join(METHODS), help="a subset of brecq,qdrop (default: both)")
    p.add_argument("--grids", default=",".join(GRIDS),
                   help="weight grids, a subset of symmetric,asymmetric (default: both)")
    p.add_argument("--points", default=",".join(POINT_OPTIONS),
                   help="pyioso's quantization points, a subset of engine,reference (default: both)")
    p.add_argument("--act-init", default="float", choices=calibrate.ACT_INITS,
                   help="pyioso's activation steps before the activation stage (pyioso calibrate --act-init)")
    add_run_options(p, "PARITY.md", jobs=2, ray=False)
    args = p.parse_args(argv)
    try:
        bits = [_parse_bits(b) for b in args.bits.split(",")]
        if any(a is None for _, a in bits):
            raise PyiosoError(f"--bits {args.bits}: parity compares quantized activations; write WxAy with y < 32")
        methods = _subset("--methods", args.methods, METHODS)
        grid_names = _subset("--grids", args.grids, GRIDS)
        point_names = _subset("--points", args.points, POINT_OPTIONS)
        budget = Budget(args.iters, args.act_iters)
        out = Path(args.out) / budget.folder
        checkpoint = train.TRAINED if args.report_only else \
            train.resolve_weights(train.TRAINED, NET, budget.data, budget.size, not args.quiet)
        grids = [GRID_OPTIONS[name] for name in grid_names]
        act_init = () if args.act_init == "float" else (("act_init", args.act_init),)
        cells = [Cell(NET, w, a, method, seed, grid + POINT_OPTIONS[point] + act_init) for w, a in bits
                 for method in methods for grid in grids for point in point_names for seed in range(args.seeds)]
        if "brecq" in methods and "engine" in point_names:      # the weight stage alone, beside BRECQ's code's
            cells += [Cell(NET, w, None, "brecq", seed, grid) for w in dict.fromkeys(w for w, _ in bits)
                      for grid in grids for seed in range(args.seeds)]
        refs = references(bits, args.seeds, methods, grid_names)
        _restore(Path(args.docs) / RECORDS, cells, refs, budget, out,
                 None if args.report_only else checkpoint_of(checkpoint))
        ours = run_grid(cells, budget, dict.fromkeys([NET], checkpoint), out, args.jobs, not args.quiet,
                        not args.report_only)
        done = _run_references(refs, budget, checkpoint, out / "parity", args.jobs, not args.quiet,
                               not args.report_only)
        command = " ".join(["python -m bench.accuracy.parity", *(sys.argv[1:] if argv is None else argv)])
        path = report(rows(ours, done), budget, Path(args.docs), command.replace(" --report-only", ""),
                      len(cells) + len(refs), len(ours) + len(done), ours)
        output.write_json(str(Path(args.docs) / RECORDS),
                          {"pyioso": ours, "references": {ref.key: result for ref, result in done}})
    except PyiosoError as err:
        sys.exit(f"error: {err}")
    print(f"wrote {path} ({len(ours)} pyioso and {len(done)} reference calibrations)")


def _subset(option: str, value: str, choices) -> list[str]:
    """A comma-separated option's names, in `choices`' order; an empty or unknown name is an error."""
    names = value.split(",")
    if unknown := [name for name in names if name not in choices]:
        raise PyiosoError(f"{option} {value}: {', '.join(map(repr, unknown))} is not one of {','.join(choices)}")
    return [name for name in choices if name in names]


def _restore(path: Path, cells: list[Cell], refs: list[Reference], budget: Budget, out: Path,
             checkpoint: str | None) -> None:
    """Records a committed comparison holds under this budget, written where a run finds them;
    none where it ran on another checkpoint than `checkpoint` (this machine's SHA-256; None: a
    report of the committed records), so that both sides run again on this one."""
    if not path.is_file():
        return
    committed = json.loads(path.read_text())
    if checkpoint is not None and any(r.get("checkpoint") not in (None, checkpoint) for r in committed["pyioso"]):
        return
    report = checkpoint is None         # the committed records are the report: they replace this machine's
    ours = {r["key"]: r for r in committed["pyioso"] if Budget(**r["budget"]) == budget}
    for cell in cells:
        if cell.key in ours:
            place(cell, out, ours[cell.key], rewrite=report)
    for ref in refs:
        result = committed["references"].get(ref.key)
        if (report or not (out / "parity" / f"{ref.key}.json").is_file()) and result and \
                (result["iters"], result["images"], result["size"]) == (budget.iters, budget.images, budget.size) and \
                result["act_iters"] in (None, budget.act_iters):
            output.write_json(str(out / "parity" / f"{ref.key}.json"), result)


def _run_references(refs: list[Reference], budget: Budget, checkpoint: str, out: Path, jobs: int,
                    progress: bool, run: bool) -> list[tuple[Reference, dict]]:
    """Each reference cell's record, running the missing ones (`jobs` processes) when `run`."""
    from tqdm import tqdm

    if not run:
        return [(ref, json.loads((out / f"{ref.key}.json").read_text())) for ref in refs
                if (out / f"{ref.key}.json").is_file()]
    for name in sorted({ref.method for ref in refs if not (out / f"{ref.key}.json").is_file()}):
        fetched = subprocess.run([str(ROOT / "scripts" / "fetch_reference.sh"), name], capture_output=True,
                                 text=True, cwd=ROOT)
        if fetched.returncode:
            raise PyiosoError(fetched.stderr.strip())
    done = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool, \
            tqdm(total=len(refs), desc="bench-parity references", unit="cell", disable=not progress) as bar:
        futures = {pool.submit(ref.run, budget, checkpoint, out): ref for ref in refs}
        for future in as_completed(futures):
            ref = futures[future]
            done[ref] = future.result()
            bar.set_postfix_str(f"{ref.key}: {done[ref]['top1']:.2f}%")
            bar.update()
    return [(ref, done[ref]) for ref in refs]


if __name__ == "__main__":
    main()
