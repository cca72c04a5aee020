"""The benchmark grid: settings, budgets, cells, and running them side by side."""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pyioso import output, parallel
from pyioso.calib import calibrate, finetune, workflow
from pyioso.cli.types import positive_int
from pyioso.data.datasets import FASHION
from pyioso.models import train

WEIGHT_ONLY = ((4, None), (3, None), (2, None))
WEIGHT_ACT = ((4, 4), (2, 4), (3, 3), (2, 2))
METHODS = ("rtn", "adaround", "brecq", "qdrop", "brecq+ioso", "qdrop+ioso")
# QDrop drops quantized activations; with float activations it is BRECQ's weight stage, so the
# weight-only table leaves it out (as the paper's Table 2 does).
WEIGHT_ONLY_METHODS = ("rtn", "adaround", "brecq", "brecq+ioso")
IOSO_METHODS = ("brecq+ioso", "qdrop+ioso")
# Paper Table 4 on resnet18 W2A4: label, method, options, learned (V, gamma^z, phi^z, gamma^y, R).
ABLATION = (
    ("rounding only", "brecq", (), "V"),
    ("+ output offset", "brecq+ioso", (("input_scale", "none"), ("oso_scale", False)), "V phi"),
    ("+ output scale", "brecq+ioso", (("input_scale", "none"), ("oso_offset", False)), "V gamma"),
    ("+ output offset & scale", "brecq+ioso", (("input_scale", "none"),), "V gamma phi"),
    ("+ input scale, ungrouped", "brecq+ioso", (("input_scale", "free"),), "V gamma phi gamma_y"),
    ("+ input scale grouped (ISG)", "brecq+ioso", (), "V gamma phi gamma_y R"),
    # the full method less OSO on the classifier (a per-class logit scale and offset): what it costs
    # at converged budgets (docs/CALIBRATION.md)
    ("ISG, no OSO on the classifier", "brecq+ioso", (("oso_logits", False),), "V gamma phi gamma_y R"),
)
ABLATION_NET, ABLATION_BITS = "resnet18", (2, 4)
# Cells of at least this many weight-stage iterations save a checkpoint after every block: they run
# for an hour or more, and an interrupted one resumes from its last block instead of from zero.
CHECKPOINT_ITERS = 1000
# Weight-stage iterations from which the tables count as converged: where BRECQ's top-1 stops
# improving in the budget sweep (docs/SWEEP.md), the budget `make bench-accuracy-converged` runs.
CONVERGED_ITERS = 5000
# A cell option that is not a calibration setting: epochs of `pyioso finetune` (QAT) after it.
FINETUNE = "finetune"


def bits_label(w_bits: int, a_bits: int | None) -> str:
    return f"W{w_bits}A{a_bits or 32}"


@dataclass(frozen=True)
class Budget:
    """What every cell gets (the same for every method, so rows compare)."""

    iters: int = workflow.QUICK["iters"]            # weight stage (QDrop: its joint stage) per segment
    act_iters: int = workflow.QUICK["act_iters"]    # BRECQ's activation stage per segment
    images: int = 1024          # calibration images
    eval_images: int | None = None      # test images (None: the whole test split)
    size: int = 32
    data: str = FASHION         # or an ImageFolder directory (train/ and val/ inside)
    classes: int = train.CLASSES

    @property
    def held_out(self) -> int:
        """Images each split of a cell's generalization measure runs on (workflow.generalization):
        workflow.HELD_OUT, as many as the test images where a smoke run evaluates on fewer."""
        return min(workflow.HELD_OUT, self.eval_images or workflow.HELD_OUT)

    @property
    def folder(self) -> str:
        """The records' directory name: cells recorded under another budget or data never mix."""
        data = "" if self.data == FASHION else f"-{Path(self.data).name}"
        return f"i{self.iters}-a{self.act_iters}-n{self.images}-s{self.size}{data}"

    def other_images(self, root: Path) -> list[Budget]:
        """This budget with each other calibration-image count that has a folder under `root`,
        fewest images first: what a study of the image count finds recorded."""
        head, tail = self.folder.split(f"-n{self.images}-", 1)
        pattern = re.compile(rf"{re.escape(head)}-n(\d+)-{re.escape(tail)}")
        counts = {int(m[1]) for d in (root.iterdir() if root.is_dir() else ()) if (m := pattern.fullmatch(d.name))}
        return [replace(self, images=n) for n in sorted(counts - {self.images})]

    @staticmethod
    def iterations_of(folder: str) -> tuple[int, int] | None:
        """(weight, activation) iterations of a name `folder` wrote (results.csv's budget column)."""
        found = re.match(r"i(\d+)-a(\d+)-", folder)
        return (int(found[1]), int(found[2])) if found else None


@dataclass(frozen=True)
class Cell:
    net: str
    w_bits: int
    a_bits: int | None
    method: str
    seed: int
    options: tuple[tuple[str, object], ...] = field(default=())

    @property
    def key(self) -> str:
        opts = "".join(f"_{k}-{v}" for k, v in self.options)
        return f"{self.net}_{bits_label(self.w_bits, self.a_bits)}_{self.method}{opts}_s{self.seed}"

    @property
    def bits(self) -> str:
        return bits_label(self.w_bits, self.a_bits)

    def record(self, out: Path) -> Path:
        return out / "cells" / f"{self.key}.json"

    def stored(self, out: Path) -> dict | None:
        """Its record in OUT, or None before it is recorded."""
        return json.loads(self.record(out).read_text()) if self.record(out).is_file() else None

    def recorded(self, budget: Budget, **results) -> dict:
        """The cell's JSON record: what it is, its budget, and its results."""
        return {**asdict(self), "options": dict(self.options), "key": self.key, "bits": self.bits,
                "budget": asdict(budget), **results}

    def config(self, budget: Budget) -> calibrate.Config:
        settings = {k: v for k, v in self.options if k != FINETUNE}
        return calibrate.Config.named(self.method, w_bits=self.w_bits, a_bits=self.a_bits,
                                      iters=budget.iters, act_iters=budget.act_iters, seed=self.seed, **settings)

    @property
    def finetune_epochs(self) -> int:
        return dict(self.options).get(FINETUNE, 0)


# The calibration whose history draws the Fig. 11 plots (input scales, group sizes).
FIG11_CELL = Cell(ABLATION_NET, *ABLATION_BITS, "brecq+ioso", 0)


def grid(plan: dict[str, tuple[tuple[int, int | None], ...]], seeds: int, methods: tuple[str, ...] = METHODS,
         ablation: bool = True) -> list[Cell]:
    """Every cell of the tables, each once: per network (plan: its bit settings), the bits in the
    order given (those that matter most first, so a benchmark cut short has them); the ablation
    runs with its bit setting."""
    cells = []
    for net, bits in plan.items():
        for w, a in bits:
            cells += [Cell(net, w, a, method, seed) for method in methods
                      if a is not None or method in WEIGHT_ONLY_METHODS for seed in range(seeds)]
            if ablation and (net, (w, a)) == (ABLATION_NET, ABLATION_BITS):
                cells += [Cell(net, w, a, method, seed, options)
                          for _, method, options, _ in ABLATION for seed in range(seeds)]
    return list(dict.fromkeys(cells))


def run_cell(cell: Cell, budget: Budget, weights: str, out: Path, threads: int = 1) -> dict:
    """Calibrate and evaluate one cell (its calibration folder in OUT/runs/KEY); its record."""
    import torch

    torch.set_num_threads(threads)
    directory = out / "runs" / cell.key
    config = cell.config(budget)
    run = workflow.Run(cell.net, weights, budget.data, budget.size, budget.images, budget.classes)
    began = time.perf_counter()
    summary = workflow.calibrate_network(run, config, directory, progress=False,
                                         checkpoints=budget.iters >= CHECKPOINT_ITERS)
    extra = {}
    if cell.finetune_epochs:        # QAT on the calibration, evaluated in place of it
        tuned = workflow.finetune_network(directory, directory / "finetuned",
                                          finetune.FinetuneConfig(cell.finetune_epochs, seed=cell.seed), False)
        directory, summary = directory / "finetuned", {**summary, "network": tuned["network"]}
        extra = {"finetune": tuned["epochs"]}
    seconds = time.perf_counter() - began + summary["resumed_seconds"]     # a resumed cell's earlier runs too
    extra["generalization"] = workflow.generalization(summary["network"], run, config, budget.held_out)
    # the integer network where a table reports it: IOSO's, ternary/binary codes, QAT's, mixed widths
    integer = (cell.method in IOSO_METHODS or config.weight_levels != "uniform" or cell.finetune_epochs > 0
               or config.mixed_budget is not None or config.mixed_act_budget is not None) and workflow.exportable(config)
    result = workflow.evaluate(directory, budget.eval_images, progress=False, integer=integer,
                               net=summary["network"])
    record = cell.recorded(budget, checkpoint=checkpoint_of(weights), calib_seconds=round(seconds, 1),
                           threads=threads, images=result["images"],
                           float=result["top1"]["float"], fake_quant=result["top1"]["fake-quant"],
                           integer=result["top1"].get("integer"), agreement=result["integer_agreement"],
                           max_logit_code_diff=result["max_logit_code_diff"],
                           losses=block_losses(summary["history"]), **extra)
    for folder in {out / "runs" / cell.key, directory}:     # the records and plots stay; the weights go
        (folder / workflow.FINAL).unlink()
        shutil.rmtree(folder / workflow.ARTIFACT, ignore_errors=True)
    return record


def checkpoint_of(weights: str) -> str:
    """What a record says it calibrated: the weights file's SHA-256, else the weights argument
    ('random'): cells on different checkpoints do not compare."""
    path = Path(weights)
    return train.sha256(path) if path.is_file() else weights


def place(cell: Cell, out: Path, record: dict, rewrite: bool) -> bool:
    """Write a committed record of `cell` where a run finds it: where none is recorded here, or,
    with `rewrite`, over one recorded on another checkpoint (another study's run on this machine,
    or this machine's run where the committed record is the report), whose run folder moves aside
    to runs/KEY@CHECKPOINT, so that no table mixes checkpoints. True when it wrote."""
    stored = cell.stored(out)
    if stored is not None and (not rewrite or stored.get("checkpoint") == record.get("checkpoint")):
        return False
    runs = out / "runs" / cell.key
    if stored is not None and runs.is_dir():
        aside = runs.with_name(f"{cell.key}@{str(stored.get('checkpoint'))[:8]}")
        shutil.rmtree(aside, ignore_errors=True)        # an older run of the same cell and checkpoint
        runs.rename(aside)
    output.write_json(str(cell.record(out)), record)
    return True


def usual_checkpoint(records: list[dict]) -> str | None:
    """The checkpoint most of these records ran on (None for none; a tie: the first recorded)."""
    used = [r.get("checkpoint") for r in records]
    return max(dict.fromkeys(used), key=used.count) if used else None


def committed_records(path: Path) -> list[dict]:
    """The records a study committed beside its report (none before its first)."""
    return json.loads(path.read_text()) if path.is_file() else []


def merge_records(committed: list[dict], records: list[dict]) -> list[dict]:
    """Committed records and this run's, one per (cell, budget, checkpoint), this run's fields where
    both hold one: what a study writes back, so a run of part of it drops nothing, not even the block
    losses of a cell this run took from a results.csv (which holds none)."""
    def identity(r: dict) -> tuple:
        return r["key"], Budget(**r["budget"]), r["checkpoint"]
    merged = {identity(r): r for r in committed}
    for r in records:
        merged[identity(r)] = {**merged.get(identity(r), {}), **r}
    return list(merged.values())


def block_losses(history: list[dict]) -> list[dict]:
    """Each stage's reconstruction loss of each block, before and after (the calibrator's
    history without its curves): what a budget sweep compares across iterations."""
    return [{key: entry[key] for key in ("stage", "segment", "loss_before", "loss_after")} for entry in history]


def add_eval_images(p) -> None:
    p.add_argument("--eval-images", type=positive_int,
                   help="test images (default: all 10k); fewer (a smoke run) also measure the held-out "
                        f"losses on that many images instead of {workflow.HELD_OUT:,}")


def add_run_options(p, report: str, jobs: int, ray: bool = True) -> None:
    """The options a study shares with the grid: side by side, where records and report go."""
    p.add_argument("--jobs", type=positive_int, default=jobs, help=f"calibrations side by side (default: {jobs})")
    if ray:
        p.add_argument("--ray", help=parallel.RAY_HELP)
    p.add_argument("--out", default="build/bench/accuracy", help="records (default: build/bench/accuracy)")
    p.add_argument("--docs", default="docs", help=f"where {report} and its plot go (default: docs)")
    p.add_argument("--report-only", action="store_true", help="write the report from the recorded cells")
    p.add_argument("--quiet", action="store_true")


def run_grid(cells: list[Cell], budget: Budget, weights: dict[str, str], out: Path,
             jobs: int = 1, progress: bool = True, run: bool = True, ray: str | None = None) -> list[dict]:
    """Run the cells not yet recorded, `jobs` processes of one thread each, or Ray tasks
    (pyioso.parallel), writing each record here as it arrives (with `run` False, only collect
    the recorded ones). A cell recorded on another checkpoint than its network's weights file
    here (copied from committed reports, or a retraining on another CPU model) is run again: the
    committed reports keep the other checkpoint's record. Seed 0 of every cell runs before any
    cell's next seed, so a run cut short (days at a converged budget) has a result in every table."""
    from tqdm import tqdm

    records = {}
    here = {net: checkpoint_of(path) for net, path in weights.items() if Path(path).is_file()}
    bar = tqdm(total=len(cells), desc="bench-accuracy", unit="cell", disable=not progress)
    todo = []
    for cell in cells:
        record = cell.stored(out)
        theirs = record and record.get("checkpoint")       # None or '': a report that recorded none
        if record is not None and (not run or not theirs or theirs == here.get(cell.net, theirs)):
            records[cell] = record
            bar.update()
        else:
            todo.append(cell)
    if not run:
        bar.close()
        return [records[cell] for cell in cells if cell in records]
    todo.sort(key=lambda cell: cell.seed)
    by_key = {cell.key: cell for cell in todo}
    for record in parallel.unordered(run_cell, [(cell, budget, weights[cell.net], out) for cell in todo], jobs, ray):
        cell = by_key[record["key"]]
        output.write_json(str(cell.record(out)), record)
        records[cell] = record
        bar.set_postfix_str(f"{cell.key}: {record['fake_quant']:.2f}%")
        bar.update()
    bar.close()
    return [records[cell] for cell in cells]


