"""make bench-accuracy's smoke version: a tiny grid on untrained resnet18 at 16 px."""

import csv
import hashlib
import json
import shutil

import pytest
import torch

from bench.accuracy import __main__ as cli, cells as grid_cells, records
from golden.errors import PyiosoError
from pyioso.models import train, tv

pytestmark = pytest.mark.usefixtures("eager_kernels")

TINY = ["--weights", "random", "--size", "16", "--images", "32", "--eval-images", "100",
        "--iters", "2", "--act-iters", "1", "--seeds", "1", "--bits", "W2A4,W2A32",
        "--methods", "rtn,brecq+ioso", "--jobs", "2", "--quiet"]


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory):
    """The TINY grid run once, (out, docs); each test works on its own copy."""
    root = tmp_path_factory.mktemp("tiny")
    cli.main([*TINY, "--out", str(root / "out"), "--docs", str(root / "docs")])
    return root


def _copy_of(benchmark, tmp_path):
    return tuple(shutil.copytree(benchmark / name, tmp_path / name) for name in ("out", "docs"))


def test_benchmark_writes_every_table_and_resumes(tiny_benchmark, tmp_path):
    out, docs = _copy_of(tiny_benchmark, tmp_path)
    argv = [*TINY, "--out", str(out), "--docs", str(docs)]
    cells = grid_cells.grid({"resnet18": ((2, 4), (2, None))}, 1, ("rtn", "brecq+ioso"))
    # rtn and brecq+ioso at W2A4 and weight-only, and the six other ablation rows, one seed each
    # (seeds are planned by test_reused_cells_stay_with_the_checkpoint_they_were_calibrated_on).
    assert len(cells) == 2 * 2 + 6
    rows = list(csv.DictReader((docs / "results.csv").open()))
    assert sorted((r["bits"], r["method"], r["options"], r["seed"]) for r in rows) == sorted(
        (c.bits, c.method, ";".join(f"{k}={v}" for k, v in c.options), str(c.seed)) for c in cells)
    ioso = [r for r in rows if r["method"] == "brecq+ioso" and r["bits"] == "W2A4"]
    exported = [r for r in ioso if "free" not in r["options"]]      # free scales are not integer
    assert len(exported) == 5 and all(r["integer"] and r["agreement"] for r in exported)
    assert not any(r["integer"] for r in ioso if "free" in r["options"])
    assert not any(r["integer"] for r in rows if r["method"] == "rtn" or r["bits"] == "W2A32")
    text = (docs / "RESULTS.md").read_text()
    for heading in ("## Models", "## Budget", "## Accuracy", "## Integer inference", "## Ablation",
                    "## Learned input scales", "## Targets", "## Integer-op cost",
                    "## Calibration time"):
        assert heading in text
    assert "10 of the 10 planned calibrations" in text
    assert "| + input scale grouped (ISG) | ✓ | ✓ | ✓ | ✓ | ✓ |" in text
    for png in ("results_bits.png", "results_ablation.png", "results_input_scales.png", "results_groups.png"):
        assert (docs / png).stat().st_size > 1000
    # A second run finds every cell recorded, runs none, and writes the same report.
    stamps = {p.name: p.stat().st_mtime_ns for p in (out.glob("*/cells/*.json"))}
    cli.main(argv)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*/cells/*.json")} == stamps
    assert _uncommanded(docs / "RESULTS.md") == _uncommanded(tiny_benchmark / "docs" / "RESULTS.md")
    # A fresh output folder reusing that report runs nothing: the Fig. 11 plots come from the data
    # the report carried, and the same rows come out.
    fresh = tmp_path / "fresh"
    cli.main([*TINY, "--out", str(fresh), "--docs", str(fresh), "--reuse", str(docs)])
    assert not list(fresh.glob("*/runs/*"))
    assert (fresh / "results.csv").read_text() == (docs / "results.csv").read_text()
    assert (fresh / "results_fig11.json").read_text() == (docs / "results_fig11.json").read_text()
    assert _uncommanded(fresh / "RESULTS.md") == _uncommanded(docs / "RESULTS.md")
    # A report from before the Fig. 11 data were carried hands on its Fig. 11 plots instead.
    old, carried = tmp_path / "old", tmp_path / "carried"
    shutil.copytree(docs, old)
    (old / records.FIG11_JSON).unlink()
    cli.main([*TINY, "--out", str(carried), "--docs", str(carried), "--reuse", str(old)])
    assert not list(carried.glob("*/runs/*"))
    assert all((carried / png).read_bytes() == (docs / png).read_bytes() for png in records.FIG11_PNGS)
    assert _uncommanded(carried / "RESULTS.md") == _uncommanded(docs / "RESULTS.md")
    # With neither (a results.csv copied alone), that cell runs again and comes out as before:
    # the same rows but for the timing.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "results.csv").write_text((docs / "results.csv").read_text())
    again = tmp_path / "again"
    cli.main([*TINY, "--out", str(again), "--docs", str(again), "--reuse", str(alone / "results.csv")])
    assert [p.name for p in again.glob("*/runs/*")] == [grid_cells.FIG11_CELL.key]

    def untimed(path):
        return [{k: v for k, v in r.items() if k != "calib_seconds"} for r in csv.DictReader(path.open())]
    assert untimed(again / "results.csv") == untimed(docs / "results.csv")
    with pytest.raises(SystemExit, match="not a results.csv of this version"):
        (tmp_path / "old.csv").write_text("net,bits\nresnet18,W2A4\n")
        cli.main([*TINY, "--out", str(fresh), "--docs", str(fresh), "--reuse", str(tmp_path / "old.csv")])


def _uncommanded(path):
    """A report but for the line that names the command which wrote it."""
    return [line for line in path.read_text().splitlines() if not line.startswith("Produced by")]


def test_report_only_renders_what_is_recorded(tmp_path):
    out, docs = tmp_path / "out", tmp_path / "docs"
    cli.main([*TINY, "--report-only", "--out", str(out), "--docs", str(docs)])
    text = (docs / "RESULTS.md").read_text()
    assert "0 of the 10 planned calibrations are recorded; cells not run are left out or show –" in text


def test_reports_of_other_input_sizes_and_budgets_link_each_other(tmp_path):
    docs, sub = tmp_path / "docs", tmp_path / "docs" / "64px"
    deeper = sub / "i600"
    only = [*TINY, "--report-only", "--out", str(tmp_path / "out")]
    for folder in (sub, deeper):
        cli.main([*only, "--docs", str(folder)])
    (sub / records.MODELS_JSON).write_text(json.dumps({"resnet18": {"size": 64, "top1": 93.05}}))
    (sub / "results.csv").write_text("net,budget\nresnet18,i200-a50-n1024-s64\n")
    cli.main([*only, "--docs", str(docs)])
    assert ("The same benchmark on other inputs or budgets:\n\n- [64px/RESULTS.md](64px/RESULTS.md): resnet18 at "
            "64 px, float 93.05%; 200/50 iterations\n- [64px/i600/RESULTS.md](64px/i600/RESULTS.md)\n"
            ) in (docs / "RESULTS.md").read_text()
    cli.main([*only, "--docs", str(sub)])
    assert "- [../RESULTS.md](../RESULTS.md)\n- [i600/RESULTS.md](i600/RESULTS.md)\n" in (sub / "RESULTS.md").read_text()


def test_each_network_can_have_its_own_bits():
    plan = cli.parse_plan("resnet18, mobilenet_v2:W4A4+w2a32", ((2, 4), (3, 3)))
    assert plan == {"resnet18": ((2, 4), (3, 3)), "mobilenet_v2": ((4, 4), (2, None))}
    cells = grid_cells.grid(plan, 1, ("rtn", "qdrop"), ablation=False)
    assert [(c.net, c.bits, c.method) for c in cells if c.net == "mobilenet_v2"] == [
        ("mobilenet_v2", "W4A4", "rtn"), ("mobilenet_v2", "W4A4", "qdrop"), ("mobilenet_v2", "W2A32", "rtn")]
    with pytest.raises(PyiosoError, match="W2A4"):
        cli.parse_plan("resnet18:4bit", ((2, 4),))


def test_reused_benchmark_trains_nothing_and_keeps_its_models(tiny_benchmark, tmp_path, monkeypatch):
    """A fresh clone extending the committed benchmark (--weights trained, every cell recorded)
    trains no network: the Models table shows the training records the report carried."""
    docs = _copy_of(tiny_benchmark, tmp_path)[1]
    record = {"net": "resnet18", "size": 16, "epochs": 8, "seed": 0, "top1": 91.25, "train_seconds": 600.0,
              "threads": 2}
    (docs / records.MODELS_JSON).write_text(json.dumps({"resnet18": record}))
    monkeypatch.setenv("PYIOSO_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(train, "train", lambda *a, **k: pytest.fail("trained a network"))
    fresh = tmp_path / "fresh"
    trained = [a if a != "random" else "trained" for a in TINY]
    cli.main([*trained, "--out", str(fresh), "--docs", str(fresh), "--reuse", str(docs)])
    assert "| resnet18 | 16 px | 8 | 0 | 10.0 | 2 | – | 91.25 |" in (fresh / "RESULTS.md").read_text()
    assert json.loads((fresh / records.MODELS_JSON).read_text()) == {"resnet18": record}


def test_reused_cells_stay_with_the_checkpoint_they_were_calibrated_on(tmp_path, monkeypatch, capsys):
    """Training is byte-identical per CPU model only: where this machine's checkpoint differs from
    the one a reused report calibrated, new cells would mix two sets of weights, so the reused cells
    of that network run again here; with no new cells they stay, with the report's Models row."""
    one = ["--size", "16", "--images", "32", "--eval-images", "100", "--iters", "2", "--act-iters", "1",
           "--bits", "W2A32", "--methods", "rtn", "--no-ablation", "--jobs", "1", "--quiet", "--weights", "trained"]
    monkeypatch.setenv("PYIOSO_CACHE", str(tmp_path / "cache"))
    recipe = train.Recipe("resnet18", size=16)
    ours = train.cache_dir() / f"{recipe.stem()}.pt"
    ours.parent.mkdir(parents=True)
    torch.save(tv.build_model("resnet18", 10, seed=0).state_dict(), ours)
    mine = {"net": "resnet18", "size": 16, "epochs": 8, "seed": 0, "top1": 12.34, "train_seconds": 60.0,
            "threads": 1, "sha256": hashlib.sha256(ours.read_bytes()).hexdigest()}
    ours.with_suffix(".json").write_text(json.dumps(mine))
    docs = tmp_path / "docs"
    cli.main([*one, "--seeds", "1", "--out", str(tmp_path / "out"), "--docs", str(docs)])
    theirs = {**mine, "top1": 91.25, "sha256": "0" * 64}     # as if calibrated on another machine's checkpoint
    (docs / records.MODELS_JSON).write_text(json.dumps({"resnet18": theirs}))
    (docs / "results.csv").write_text((docs / "results.csv").read_text().replace(mine["sha256"], theirs["sha256"]))

    kept = tmp_path / "kept"
    cli.main([*one, "--seeds", "1", "--out", str(kept), "--docs", str(kept), "--reuse", str(docs)])
    assert not list(kept.glob("*/runs/*"))
    assert "| resnet18 | 16 px | 8 | 0 | 1.0 | 1 | `00000000` | 91.25 |" in (kept / "RESULTS.md").read_text()

    rerun = tmp_path / "rerun"
    cli.main([*one, "--seeds", "2", "--out", str(rerun), "--docs", str(rerun), "--reuse", str(docs)])
    assert "resnet18: the checkpoint here is not the one" in capsys.readouterr().err
    assert sorted(p.name for p in rerun.glob("*/runs/*")) == sorted(
        c.key for c in grid_cells.grid({"resnet18": ((2, None),)}, 2, ("rtn",), ablation=False))
    assert f"| resnet18 | 16 px | 8 | 0 | 1.0 | 1 | `{mine['sha256'][:8]}` | 12.34 |" in (rerun / "RESULTS.md").read_text()
    # a report of the committed cells takes theirs over this machine's, its run folder set aside
    cli.main([*one, "--seeds", "1", "--out", str(rerun), "--docs", str(rerun), "--reuse", str(docs), "--report-only"])
    cell, budget = grid_cells.grid({"resnet18": ((2, None),)}, 1, ("rtn",), ablation=False)[0], next(rerun.glob("*/cells")).parent
    assert json.loads(cell.record(budget).read_text())["checkpoint"] == theirs["sha256"]
    assert (budget / "runs" / f"{cell.key}@{mine['sha256'][:8]}").is_dir() and not (budget / "runs" / cell.key).exists()

    (docs / records.MODELS_JSON).write_text(json.dumps({"resnet18": {**theirs, "sha256": None}}))
    (docs / "results.csv").write_text((docs / "results.csv").read_text().replace(theirs["sha256"], ""))
    unknown = tmp_path / "unknown"
    cli.main([*one, "--seeds", "2", "--out", str(unknown), "--docs", str(unknown), "--reuse", str(docs)])
    assert "recorded no SHA-256 of resnet18's checkpoint" in capsys.readouterr().err
    assert len(list(unknown.glob("*/runs/*"))) == 1


def test_a_cell_of_one_seed_shows_its_value_without_a_spread():
    from bench.accuracy import report

    def rec(method, seed, top1):
        return {"net": "resnet18", "bits": "W2A4", "method": method, "options": {}, "seed": seed,
                "float": 90.0, "fake_quant": top1}
    text = report.accuracy_tables([rec("brecq", 0, 86.5), rec("brecq+ioso", 0, 88.0), rec("brecq+ioso", 1, 89.0)],
                                  ["resnet18"])
    assert "| brecq | 86.50 |" in text and "| brecq+ioso | 88.50 ± 0.71 |" in text


def test_ioso_is_compared_with_its_base_seed_by_seed(tmp_path):
    from bench.accuracy import report

    def rec(method, seed, top1, bits="W2A4"):
        return {"net": "resnet18", "bits": bits, "method": method, "options": {}, "seed": seed,
                "float": 90.0, "fake_quant": top1}
    # seed 2 of brecq+ioso and W4A4's qdrop+ioso have no partner: they pair with nothing
    cells = [rec("brecq", 0, 86.0), rec("brecq", 1, 88.0), rec("brecq+ioso", 0, 87.0), rec("brecq+ioso", 1, 87.5),
             rec("brecq+ioso", 2, 95.0), rec("qdrop+ioso", 0, 80.0, "W4A4")]
    assert report.ioso_gains(cells, "resnet18") == {"W2A4": {"brecq+ioso": [1.0, -0.5], "qdrop+ioso": []}}
    gains = report.accuracy_tables(cells, ["resnet18"]).split("**resnet18, IOSO minus its base**")[1]
    assert "| W2A4 | +0.25 ± 1.06 (1 of 2 higher) | – |" in gains and "W4A4" not in gains
    assert report.ioso_gain_plot(cells, ["resnet18"], tmp_path / "gain.png")
    assert (tmp_path / "gain.png").stat().st_size > 1000
    assert not report.ioso_gain_plot(cells[2:], ["resnet18"], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_a_target_says_how_many_seeds_stand_behind_it_and_how_far_they_scatter():
    from bench.accuracy import report

    def rec(method, seed, top1):
        return {"net": "resnet18", "bits": "W2A4", "method": method, "options": {}, "seed": seed,
                "float": 90.0, "fake_quant": top1}
    cells = [rec("brecq", 0, 86.0), rec("brecq", 1, 87.0), rec("qdrop", 0, 87.0),
             rec("brecq+ioso", 0, 88.0), rec("brecq+ioso", 1, 88.2)]
    line, = report.targets(cells)
    assert line.startswith("resnet18 W2A4, brecq+ioso: 88.10% vs brecq 86.50% (+1.60 pp")
    assert line.endswith("**met** (2 / 2 / 1 seeds; the seeds' std reaches 0.71 pp)")
    alone, = report.targets([rec("brecq", 0, 86.0), rec("qdrop", 0, 87.0), rec("brecq+ioso", 0, 88.0)])
    assert alone.endswith("(1 / 1 / 1 seeds; no spread measured)")
    # the ablation's row without OSO on the classifier is judged against the same targets
    variant = {**rec("brecq+ioso", 0, 86.2), "options": {"oso_logits": False}}
    _, line = report.targets([rec("brecq", 0, 86.0), rec("qdrop", 0, 87.0), rec("brecq+ioso", 0, 88.0), variant])
    assert line.startswith("resnet18 W2A4, brecq+ioso --no-oso-logits: 86.20% vs brecq 86.00% (+0.20 pp")
    assert "**not met** (1 / 1 / 1 seeds" in line


def test_the_quick_budget_points_at_the_reports_that_ran_more_iterations(tmp_path):
    from bench.accuracy import report

    for folder, budget in (("i5000", "i5000-a1250-n1024-s32"), ("64px", "i200-a50-n1024-s64")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "RESULTS.md").write_text("# other\n")
        (tmp_path / folder / "results.csv").write_text(f"budget\n{budget}\n")
    assert report._larger_budgets(tmp_path, 200) == \
        " The same tables at more iterations: [i5000/RESULTS.md](i5000/RESULTS.md) (5,000/1,250)."
    assert report._larger_budgets(tmp_path, 5000) == ""


def test_the_tables_budget_is_labelled_quick_or_converged_never_both(tmp_path):
    from bench.accuracy import report
    from bench.accuracy.cells import Budget

    (tmp_path / "SWEEP.md").write_text("# Budget sweep\n\nbody\n")
    (tmp_path / "i5000").mkdir()
    quick, = report._budget_label(Budget(), tmp_path)
    assert quick.startswith("**These tables are the quick budget** (200/50 iterations)")
    converged, = report._budget_label(Budget(iters=5000, act_iters=1250), tmp_path / "i5000")
    assert converged.startswith("**These tables are the converged budget** (5000/1250 iterations)")
    assert "[../SWEEP.md](../SWEEP.md)" in converged and "quick" not in converged
    assert report._budget_label(Budget(iters=5000, act_iters=1250), tmp_path / "elsewhere") == []
    assert report._budget_label(Budget(size=64), tmp_path / "i5000") == []     # quick, without the studies


def test_the_quick_report_shows_the_converged_tables_on_its_own_checkpoints(tmp_path):
    from bench.accuracy import report
    from bench.accuracy.cells import Budget, Cell

    def rec(budget, method, seed, top1, checkpoint="aa" * 32):
        return Cell("resnet18", 2, 4, method, seed).recorded(
            budget, checkpoint=checkpoint, calib_seconds=1.0, threads=1, images=100, float=90.0, fake_quant=top1)
    budgets = {"i5000": Budget(iters=5000, act_iters=1250), "i20000": Budget(iters=20000, act_iters=5000),
               "64px": Budget(iters=5000, act_iters=1250, size=64), "i600": Budget(iters=600, act_iters=150)}
    for folder, budget in budgets.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "RESULTS.md").write_text("# other\n")
        records.write_csv([rec(budget, "brecq", 0, 88.0), rec(budget, "brecq", 1, 89.0)]
                          if folder in ("i5000", "i600") else [rec(budget, "brecq", 0, 10.0, checkpoint="bb" * 32)],
                          tmp_path / folder / "results.csv")
    quick = [rec(Budget(), "brecq", 0, 75.0)]
    # i20000 ran on another checkpoint, 64px on other inputs, i600 short of converging: the tables come from i5000
    heading, intro, tables, plot = report.converged(tmp_path, Budget(), quick, ["resnet18"])[:4]
    assert heading == "## Accuracy at the converged budget (5,000/1,250 iterations)"
    assert "(`aaaaaaaa` for resnet18)" in intro and "2 calibrations recorded so far" in intro
    assert "| brecq | 88.50 ± 0.71 |" in tables and plot == "![accuracy versus bits](i5000/results_bits.png)"
    assert report.converged(tmp_path, Budget(iters=5000, act_iters=1250), quick, ["resnet18"]) == []
    assert "![IOSO minus its base](i5000/results_ioso_gain.png)" not in report.converged(
        tmp_path, Budget(), quick, ["resnet18"])
    (tmp_path / "i5000" / report.IOSO_GAIN_PNG).write_bytes(b"drawn by that report")
    assert "![IOSO minus its base](i5000/results_ioso_gain.png)" in report.converged(
        tmp_path, Budget(), quick, ["resnet18"])
    (tmp_path / "i5000" / "TOOLBOX.md").write_text("# Toolbox\n\n## OSO on the classifier or not\n\ntext\n")
    assert report.converged(tmp_path, Budget(), quick, ["resnet18"])[-1] == (
        "Studies at this budget, each against the default above ([i5000/TOOLBOX.md](i5000/TOOLBOX.md)): "
        "OSO on the classifier or not.")
    shutil.rmtree(tmp_path / "i5000")
    assert report.converged(tmp_path, Budget(), quick, ["resnet18"]) == []
    assert report.converged(tmp_path, Budget(), [rec(Budget(), "brecq", 0, 75.0, "cc" * 32)], ["resnet18"]) == []


def test_a_study_written_back_keeps_the_block_losses_a_results_csv_record_lacks():
    from bench.accuracy.cells import Budget, merge_records

    budget = {**Budget().__dict__}
    committed = {"key": "k", "budget": budget, "checkpoint": "c", "fake_quant": 80.0, "losses": [{"stage": "w"}]}
    from_csv = {"key": "k", "budget": budget, "checkpoint": "c", "fake_quant": 80.0, "calib_seconds": 9.0}
    other = {"key": "k", "budget": budget, "checkpoint": "d", "fake_quant": 70.0}
    merged = merge_records([committed], [from_csv, other])
    assert merged == [{**committed, "calib_seconds": 9.0}, other]
