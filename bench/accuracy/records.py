"""Records of finished cells: results.csv, and a committed benchmark's cells, training records
and Fig. 11 data taken instead of run again."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from bench.accuracy.cells import FIG11_CELL, Budget, Cell, place
from golden.errors import PyiosoError
from pyioso import output
from pyioso.calib import workflow
from pyioso.models import train
from pyioso.models.train import TRAINED

# Written by `report` next to results.csv and taken back by `reuse`: the legalized tensor classes
# of the Fig. 11 cell, and the training record of each network's checkpoint.
FIG11_JSON, MODELS_JSON = "results_fig11.json", "results_models.json"
FIG11_PNGS = ("results_input_scales.png", "results_groups.png")
# Where reuse puts the Fig. 11 plots of a report that did not yet carry their data.
CARRIED_PLOTS = "carried-plots"


def fig11_legal(out: Path) -> list[tuple[str, dict]] | None:
    """(segment, legalized class) of the Fig. 11 cell: from its calibration history when it ran
    here, else from the data a reused benchmark carried."""
    history = out / "runs" / FIG11_CELL.key / workflow.HISTORY
    if history.is_file():
        return [(e["segment"], c) for e in json.loads(history.read_text())
                for c in e.get("legalize", {}).get("classes", [])]
    carried = read_json(out / FIG11_JSON)
    return None if carried is None else [(seg, c) for seg, c in carried]


CSV_COLUMNS = ["net", "bits", "w_bits", "a_bits", "method", "options", "seed", "float", "fake_quant", "integer",
               "agreement", "max_logit_code_diff", "calib_seconds", "images", "threads", "budget", "checkpoint"]
PERCENTS = ("float", "fake_quant", "integer", "agreement")       # of 10k test images: two decimals are exact


def write_csv(records: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({**r, "options": ";".join(f"{k}={v}" for k, v in r["options"].items()),
                         "budget": Budget(**r["budget"]).folder,
                         **{k: f"{r[k]:.2f}" for k in PERCENTS if r.get(k) is not None}})
    output.atomic_write(str(path), lambda f: f.write(buffer.getvalue().encode()))


def reuse(path: Path, cells: list[Cell], budget: Budget, out: Path, rewrite: bool = False) -> list[Cell]:
    """Record the planned cells that a committed benchmark holds under this budget, so a fresh
    clone extends it instead of running it again (and trains no network whose cells are all
    there). PATH is the folder `report` wrote, or its results.csv: the training records beside it
    fill the Models table, and the Fig. 11 data beside it stand in for the calibration history of
    the cell behind those plots (without them that cell runs again). `rewrite` (a report of the
    committed cells): a cell recorded here on another checkpoint than the committed one (another
    study's run on this machine's) takes the committed record, so no table mixes checkpoints, and
    its run folder moves aside to runs/KEY@CHECKPOINT."""
    folder = _report_folder(path)
    fig11_carried = _carry(folder, budget, out)
    planned = {cell.key: cell for cell in cells if cell != FIG11_CELL or fig11_carried}
    reused = []
    for cell, row_budget, results in read_csv(folder / "results.csv" if path.is_dir() else path, "--reuse"):
        if row_budget == budget.folder and cell.key in planned and place(cell, out, cell.recorded(budget, **results),
                                                                         rewrite):
            reused.append(cell)
    return reused


def read_csv(csv_path: Path, option: str) -> list[tuple[Cell, str, dict]]:
    """A results.csv `report` wrote, as (cell, budget folder, results) per row; `option` names
    where the path came from in the error that a missing or foreign file gets."""
    try:
        rows = list(csv.DictReader(csv_path.open()))
    except OSError as err:
        raise PyiosoError(f"{option} {csv_path}: cannot read it ({err.strerror}); pass the folder "
                          "(or the results.csv) that `make bench-accuracy` wrote") from None
    if rows and not set(CSV_COLUMNS) <= set(rows[0]):
        raise PyiosoError(f"{option} {csv_path}: not a results.csv of this version (missing columns "
                          f"{', '.join(sorted(set(CSV_COLUMNS) - set(rows[0])))})")
    found = []
    for row in rows:
        options = tuple(_parse_option(item) for item in row["options"].split(";") if item)
        cell = Cell(row["net"], int(row["w_bits"]), int(row["a_bits"]) if row["a_bits"] else None,
                    row["method"], int(row["seed"]), options)
        found.append((cell, row["budget"], dict(
            checkpoint=row["checkpoint"], calib_seconds=float(row["calib_seconds"]), threads=int(row["threads"]),
            images=int(row["images"]), **{k: float(row[k]) if row[k] else None for k in PERCENTS},
            max_logit_code_diff=int(row["max_logit_code_diff"]) if row["max_logit_code_diff"] else None)))
    return found


def _report_folder(path: Path) -> Path:
    """The folder of a --reuse argument (a report folder or its results.csv)."""
    return path if path.is_dir() else path.parent


def forget_other_checkpoints(path: Path, reused: list[Cell], weights: dict[str, str], to_run: set[str],
                             size: int, out: Path) -> tuple[list[str], list[str]]:
    """Keep reused cells with the checkpoint they were calibrated on: training is byte-identical per
    CPU model, not across. Where this machine's checkpoint has another SHA-256 than the reused report
    recorded, a network with new cells drops its reused ones, to run them all here; one without
    keeps them and (weights back to 'trained') the report's training record. Returns the networks
    dropped, and those with new cells whose report recorded no SHA-256 to compare."""
    carried = read_json(_report_folder(path) / MODELS_JSON) or {}
    dropped, unknown = [], []
    for net in dict.fromkeys(cell.net for cell in reused):
        done = train.cached(train.Recipe(net, size=size))
        if done is None or str(done[0]) != weights[net]:
            continue                # no checkpoint of this machine's: the report's record stands
        theirs = carried.get(net, {}).get("sha256")
        if theirs is None:
            unknown += [net] if net in to_run else []
        elif theirs != done[1]["sha256"] and net in to_run:
            dropped.append(net)
            for cell in reused:
                if cell.net == net:
                    cell.record(out).unlink()
        elif theirs != done[1]["sha256"]:
            weights[net] = TRAINED
    return dropped, unknown


def _carry(folder: Path, budget: Budget, out: Path) -> bool:
    """Take into OUT what a report folder holds besides its cells: the training records of this
    input size, and the Fig. 11 data (or, from a report older than those data, its Fig. 11 plots).
    Whether the Fig. 11 figures can now be made without running their cell."""
    models = {net: r for net, r in (read_json(folder / MODELS_JSON) or {}).items() if r.get("size") == budget.size}
    if models:
        output.write_json(str(out / MODELS_JSON), {**models, **(read_json(out / MODELS_JSON) or {})})
    fig11 = read_json(folder / FIG11_JSON)
    if fig11 is not None and not (out / FIG11_JSON).is_file():
        output.write_json(str(out / FIG11_JSON), fig11)
    elif fig11 is None and all((folder / png).is_file() for png in FIG11_PNGS):
        (out / CARRIED_PLOTS).mkdir(parents=True, exist_ok=True)
        for png in FIG11_PNGS:
            shutil.copyfile(folder / png, out / CARRIED_PLOTS / png)
    return fig11_legal(out) is not None or (out / CARRIED_PLOTS).is_dir()


def read_json(path: Path):
    """A JSON file the benchmark wrote, or None when absent; a damaged one is named."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PyiosoError(f"{path} is not readable JSON ({err}): delete it and run the benchmark again") from None


def _parse_option(item: str) -> tuple[str, object]:
    """KEY=VALUE of the options column back to the value `Config.named` took."""
    key, _, value = item.partition("=")
    return key, {"True": True, "False": False}.get(value, value)


