"""The accuracy benchmark's two studies: the budget sweep (bench.accuracy.sweep) and the baseline
parity with the reference code (bench.accuracy.parity)."""

import json
import sys

import pytest

from bench.accuracy import cells, parity, sweep
from bench.accuracy.cells import Budget, Cell
from golden.errors import PyiosoError

pytestmark = pytest.mark.usefixtures("eager_kernels")


def test_sweep_runs_cheapest_first_and_seeds_one_budget():
    pairs = sweep.plan("resnet18", (2, 4), ("brecq", "qdrop+ioso"), (20000, 200, 1000), 3, 1000)
    assert [(b.iters, b.act_iters, c.seed) for b, c in pairs[:2]] == [(200, 50, 0)] * 2
    assert [b.iters for b, _ in pairs] == sorted(b.iters for b, _ in pairs)
    assert sorted({c.seed for b, c in pairs if b.iters == 1000}) == [0, 1, 2]
    assert {c.seed for b, c in pairs if b.iters != 1000} == {0}


def test_sweep_records_block_losses_resumes_and_reports(tmp_path, monkeypatch):
    out, docs = tmp_path / "out", tmp_path / "docs"
    argv = ["--weights", "random", "--size", "16", "--images", "32", "--eval-images", "50", "--iters", "4,8",
            "--seeds-at", "8", "--seeds", "2", "--methods", "brecq+ioso", "--jobs", "2", "--quiet",
            "--out", str(out), "--docs", str(docs)]
    sweep.main(argv)
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*/cells/*.json"))]
    assert len(records) == 1 + 2
    for r in records:       # the weight and activation stage of every block, before and after
        assert {e["stage"] for e in r["losses"]} == {"weights", "activations"}
        assert sweep.final_loss(r) == pytest.approx(sum(e["loss_after"] for e in r["losses"]
                                                        if e["stage"] == "activations"))
        held = r["generalization"]         # the finished network's loss: calibration, held-out and test images
        assert set(held["calibration"]) == set(held["held_out"]) == set(held["test"]) == {e["segment"] for e in r["losses"]}
        assert held["calibration"] != held["held_out"] != held["test"]
    text = (docs / "SWEEP.md").read_text()
    assert "| method | 4 / 1 | 8 / 2 |" in text and "3 calibrations recorded (3 planned per checkpoint)" in text and "(2 seeds)" in text
    assert (docs / sweep.PNG).stat().st_size > 1000
    assert "| brecq+ioso | 8 | 2 |" in text and "| test loss |" in text and (docs / sweep.HELD_OUT_PNG).stat().st_size > 1000
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/cells/*.json")}
    sweep.main(argv)            # all recorded: nothing runs again
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/cells/*.json")} == stamps
    more = [*argv, "--images", "48", "--iters", "8", "--seeds", "1", "--docs", str(tmp_path / "docs-48")]
    sweep.main(more)        # more calibration images at one budget: the 32-image report gets a section
    assert [b.images for b in Budget(iters=8, act_iters=2, size=16, images=32).other_images(out)] == [48]
    sweep.main([*argv, "--report-only"])
    text = (docs / "SWEEP.md").read_text()
    assert "3 calibrations recorded" in text and "## Calibration images" in text
    assert "| brecq+ioso | 8 | 32 | " in text and "| brecq+ioso | 8 | 48 | " in text and "| 4 | 32 |" not in text
    assert (docs / sweep.IMAGES_PNG).stat().st_size > 1000
    seeds_at_4 = tmp_path / "docs-4"    # another --seeds-at: the second seed recorded at 8 is still reported
    sweep.main([*argv, "--seeds-at", "4", "--report-only", "--docs", str(seeds_at_4)])
    assert "(2 seeds)" in (seeds_at_4 / "SWEEP.md").read_text()
    fresh = tmp_path / "fresh"     # a clone's empty build/: the committed records, nothing run
    sweep.main([*argv, "--out", str(fresh)])
    assert not list(fresh.glob("*/runs/*")) and len(list(fresh.glob("*/cells/*.json"))) == 3
    committed = json.loads((docs / sweep.RECORDS).read_text())    # one more, on another machine's checkpoint
    (docs / sweep.RECORDS).write_text(json.dumps([*committed, {**committed[0], "checkpoint": "0123abcd" * 8}]))
    other = tmp_path / "other"
    sweep.main([*argv, "--out", str(other), "--report-only"])
    assert len(list(other.glob("*/cells/*.json"))) == 3         # not taken as this checkpoint's
    text = (docs / "SWEEP.md").read_text()
    assert "| brecq+ioso (checkpoint 0123abcd) |" in text and "`0123abcd`: float top-1" in text
    assert len(json.loads((docs / sweep.RECORDS).read_text())) == 5     # every committed record stays
    weights = tmp_path / "weights.pt"       # a checkpoint file: a cell recorded on another one runs again
    weights.write_bytes(b"a retrained checkpoint")
    stale = sorted(out.glob("*/cells/*.json"))[0]
    recorded = json.loads(stale.read_text())
    monkeypatch.setattr(cells.parallel, "unordered", lambda fn, items, jobs, ray=None: (
        {**recorded, "checkpoint": cells.checkpoint_of(path)} for _, _, path, _ in items))
    cell = next(c for c in sweep.plan("resnet18", (2, 4), ("brecq+ioso",), (4,), 1, 4) if c[1].key == recorded["key"])
    records = cells.run_grid([cell[1]], cell[0], {"resnet18": str(weights)}, stale.parent.parent, progress=False)
    assert records[0]["checkpoint"] == cells.checkpoint_of(str(weights)) == json.loads(stale.read_text())["checkpoint"]
    with pytest.raises(SystemExit, match="at least 4 iterations"):
        sweep.main([*argv, "--iters", "2"])


def test_sweep_finds_where_a_baseline_stops_and_pairs_ioso_by_seed():
    def rec(method, iters, seed, top1):
        return {"method": method, "budget": {"iters": iters}, "seed": seed, "fake_quant": top1}
    records = [rec("brecq", 200, 0, 60.0), rec("brecq", 1000, 0, 80.0), rec("brecq", 5000, 0, 86.0),
               rec("brecq", 5000, 1, 86.4), rec("brecq", 20000, 0, 86.3),
               rec("brecq+ioso", 5000, 0, 87.0), rec("brecq+ioso", 5000, 1, 88.4), rec("brecq+ioso", 5000, 2, 99.0),
               rec("qdrop (checkpoint 0123abcd)", 200, 0, 50.0), rec("qdrop (checkpoint 0123abcd)", 1000, 0, 70.0),
               rec("qdrop+ioso (checkpoint 0123abcd)", 1000, 0, 71.5)]
    assert sweep.plateau(records, "brecq") == (5000, pytest.approx([0.3]))    # seed 0: 86.0 -> 86.3
    assert sweep.ioso_gain(records, "brecq", 5000) == pytest.approx([1.0, 2.0])     # seed 2 has no pair
    assert sweep.plateau(records, "qdrop (checkpoint 0123abcd)") is None
    assert sweep.ioso_gain(records, "qdrop (checkpoint 0123abcd)", 1000) == pytest.approx([1.5])
    text = "\n".join(sweep._convergence(records, ("brecq", "brecq+ioso", "qdrop (checkpoint 0123abcd)"),
                                        [200, 1000, 5000, 20000]))
    assert ("- brecq: stops improving at 5,000 (the next budget adds +0.30 pp on one seed); IOSO's gain there "
            "+1.50 ± 0.71 pp (2 seeds)") in text       # the means over seeds would step by +0.10
    assert ("- qdrop (checkpoint 0123abcd): not yet measured to stop; from 200 to its largest budget, 1,000, it "
            "gains +20.00 pp on one seed") in text
    assert "| brecq | +20.00 | +6.00 | +0.30 |" in text


def _reference_record(out, ref, top1):
    (out / f"{ref.key}.json").write_text(json.dumps({"top1": top1}))


def test_parity_table_compares_on_the_same_grid(tmp_path):
    refs = parity.references([(2, 4)], 2)
    assert sorted({(r.method, r.grid) for r in refs}) == [("brecq", "own"), ("brecq", "pyioso"), ("qdrop", "own"),
                                                          ("qdrop", "pyioso")]
    out = tmp_path / "parity"
    out.mkdir()
    values = {("brecq", "own"): 80.0, ("brecq", "pyioso"): 70.0, ("qdrop", "own"): 75.0, ("qdrop", "pyioso"): 65.0}
    for ref in refs:
        _reference_record(out, ref, values[ref.method, ref.grid] + ref.seed)
    # a recorded reference cell is read back, not run again (no copy of the code is needed)
    done = [(ref, ref.run(Budget(), "unused.pt", out)) for ref in refs]
    asym, points = {"weight_grid": "asymmetric"}, {"act_points": "reference"}
    ours = [{"method": m, "bits": "W2A4", "seed": seed, "fake_quant": v, "options": o, "float": 90.0}
            for m, seed, v, o in (("brecq", 0, 71.0, {}), ("brecq", 1, 73.0, {}), ("brecq", 1, 79.0, asym),
                                  ("qdrop", 0, 73.0, {}), ("brecq", 0, 80.5, {**asym, **points}))]
    table = parity.rows(ours, done)
    values = {("pyioso", "symmetric"): [71.0, 73.0], ("reference", "symmetric"): [70.0, 71.0],
              ("pyioso", "asymmetric"): [79.0], ("reference", "asymmetric"): [80.0, 81.0],
              (parity.POINTS, "symmetric"): [], (parity.POINTS, "asymmetric"): [80.5]}
    seeds = {("pyioso", "symmetric"): [0, 1], ("reference", "symmetric"): [0, 1], ("pyioso", "asymmetric"): [1],
             ("reference", "asymmetric"): [0, 1], (parity.POINTS, "symmetric"): [], (parity.POINTS, "asymmetric"): [0]}
    assert table[0] == {"method": "brecq", "bits": "W2A4", **values, "seeds": seeds}
    path = parity.report(table, Budget(), tmp_path / "docs", "python -m bench.accuracy.parity", 10, 10,
                         [{**ours[0], "checkpoint": "0123abcd" * 8}])
    text = path.read_text()
    assert "checkpoint; float top-1 90.00%, checkpoint `0123abcd`)" in text
    assert ("| brecq | W2A4 | 72.00 ± 1.41 | 70.50 ± 0.71 | 79.00 | 80.50 ± 0.71 | +1.50 (outside) | "
            "-1.50 (outside) |") in text
    # paired by seed: each side's value on the same seed (seed 1's asymmetric pyioso against seed 1's 81)
    assert "| brecq | W2A4 | symmetric | engine's | +1.50 ± 0.71 (2 seeds) | 2 of 2 |" in text
    assert "| brecq | W2A4 | asymmetric | engine's | -2.00 | 0 of 1 |" in text
    assert "| brecq | W2A4 | asymmetric | reference's | +0.50 | 1 of 1 |" in text
    assert "| qdrop | W2A4 | symmetric | engine's | +8.00 | 1 of 1 |" in text
    assert "| qdrop | W2A4 | 73.00 | 65.50 ± 0.71 | – | 75.50 ± 0.71 | +7.50 (outside) | – |" in text
    # the points ablation: a row only where pyioso ran at the reference's points
    assert "| brecq | W2A4 | asymmetric | 79.00 | 80.50 | 80.50 ± 0.71 | -1.50 (outside) | +0.00 (within) |" in text
    assert text.split("## Quantization points")[1].split("## Paired by seed")[0].count("| W2A4 | symmetric |") == 0
    assert (tmp_path / "docs" / parity.PNG).stat().st_size > 1000
    # a clone finds the committed records where a run looks for them, under the same budget only
    cell = Cell("resnet18", 2, 4, "brecq", 0)
    committed = {"pyioso": [cell.recorded(Budget(), fake_quant=71.0)],
                 "references": {ref.key: {"top1": 80.0, "iters": 200, "act_iters": 50, "images": 1024, "size": 32}
                                for ref in refs}}
    (tmp_path / parity.RECORDS).write_text(json.dumps(committed))
    clone = tmp_path / "clone"
    parity._restore(tmp_path / parity.RECORDS, [cell], refs, Budget(), clone, None)
    assert json.loads(cell.record(clone).read_text())["fake_quant"] == 71.0
    assert len(list((clone / "parity").glob("*.json"))) == len(refs)
    other = tmp_path / "other"
    parity._restore(tmp_path / parity.RECORDS, [cell], refs, Budget(iters=1000, act_iters=250), other, None)
    assert not other.exists()
    # a report of the committed records takes them over a cell another study recorded here on another
    # checkpoint, whose run folder moves aside
    local = tmp_path / "local"
    (local / "runs" / cell.key).mkdir(parents=True)
    cell.record(local).parent.mkdir(parents=True, exist_ok=True)
    cell.record(local).write_text(json.dumps({**committed["pyioso"][0], "checkpoint": "4567cdef" * 8,
                                              "fake_quant": 50.0}))
    parity._restore(tmp_path / parity.RECORDS, [cell], refs, Budget(), local, None)
    assert json.loads(cell.record(local).read_text())["fake_quant"] == 71.0
    assert (local / "runs" / f"{cell.key}@4567cdef").is_dir() and not (local / "runs" / cell.key).exists()
    # a run on another machine's checkpoint takes neither side: both run again, on this one
    committed["pyioso"][0]["checkpoint"] = "0123abcd" * 8
    (tmp_path / parity.RECORDS).write_text(json.dumps(committed))
    elsewhere = tmp_path / "elsewhere"
    parity._restore(tmp_path / parity.RECORDS, [cell], refs, Budget(), elsewhere, "4567cdef" * 8)
    assert not elsewhere.exists()


def test_parity_refuses_weight_only_bits():
    with pytest.raises(SystemExit, match="quantized activations"):
        parity.main(["--bits", "W2A32", "--report-only"])


def test_parity_runs_the_subset_asked_for(tmp_path):
    refs = parity.references([(2, 4)], 3, ("qdrop",), ("symmetric",))
    assert [(r.method, r.grid, r.seed) for r in refs] == [("qdrop", "pyioso", seed) for seed in range(3)]
    parity.main(["--bits", "W2A4", "--methods", "qdrop", "--grids", "symmetric", "--points", "reference",
                 "--report-only", "--quiet", "--out", str(tmp_path / "out"), "--docs", str(tmp_path / "docs")])
    assert "0 of 6 calibrations recorded" in (tmp_path / "docs" / "PARITY.md").read_text()
    with pytest.raises(SystemExit, match="--grids sym: 'sym' is not one of symmetric,asymmetric"):
        parity.main(["--grids", "sym", "--report-only"])


def test_a_tiny_grid_runs_on_a_local_ray_and_lands_in_the_same_records(tmp_path):
    """--ray local: a Ray instance with 2 CPUs runs each cell as a task; the records are those of
    a run on local processes, and a second run (resumed) runs nothing."""
    from bench.accuracy import __main__ as cli

    tiny = ["--weights", "random", "--size", "16", "--images", "32", "--eval-images", "20", "--iters", "2",
            "--act-iters", "1", "--seeds", "2", "--bits", "W2A4", "--methods", "rtn", "--no-ablation",
            "--jobs", "2", "--quiet"]
    local, ray = tmp_path / "local", tmp_path / "ray"
    cli.main([*tiny, "--out", str(local), "--docs", str(local / "docs")])
    cli.main([*tiny, "--out", str(ray), "--docs", str(ray / "docs"), "--ray", "local"])

    def untimed(out):
        return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "calib_seconds"}
                for p in out.glob("*/cells/*.json")}
    assert len(untimed(ray)) == 2 and untimed(ray) == untimed(local)
    stamps = {p: p.stat().st_mtime_ns for p in ray.glob("*/cells/*.json")}
    cli.main([*tiny, "--out", str(ray), "--docs", str(ray / "docs"), "--ray", "local"])
    assert {p: p.stat().st_mtime_ns for p in ray.glob("*/cells/*.json")} == stamps


def test_an_absent_ray_cluster_is_named():
    from pyioso import parallel

    with pytest.raises(PyiosoError, match="--ray 127.0.0.1:1: no Ray cluster"):
        list(parallel.unordered(print, [(1,)], 1, "127.0.0.1:1"))


def test_local_workers_answer_as_they_finish_and_a_dead_one_ends_the_run():
    """A worker killed mid-item (os._exit here; the OOM killer in life) is an error, not a hang."""
    import os

    from pyioso import parallel

    assert sorted(parallel.unordered(abs, [(-2,), (-1,), (3,)], 2)) == [1, 2, 3]
    with pytest.raises(PyiosoError, match="a worker process died"):
        list(parallel.unordered(os._exit, [(9,)], 1))


def _children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (zombies count as gone)."""
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent's death signal is Linux's")
def test_local_workers_end_with_the_run():
    """A run killed outright (SIGKILL, SIGTERM) takes its workers along: orphaned, they would go on
    calibrating and hold their cells' locks against the next run."""
    import signal
    import subprocess
    import time

    run = subprocess.Popen([sys.executable, "-c", "import time; from pyioso import parallel; "
                            "list(parallel.unordered(time.sleep, [(120,)], 1))"])
    deadline = time.monotonic() + 60
    while not (workers := [p for p in _children(run.pid) if "spawn_main" in open(f"/proc/{p}/cmdline").read()]):
        assert time.monotonic() < deadline and run.poll() is None, "no worker started"
        time.sleep(0.2)
    time.sleep(1)       # past its initializer
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)


def test_results_carry_the_studies_written_beside_them(tmp_path):
    from bench.accuracy import report

    assert report.studies(tmp_path) == []
    (tmp_path / "SWEEP.md").write_text("# Budget sweep\n\ntext\n\n## Top-1 %\n\n| a |\n\n![plot](sweep.png)\n")
    title, body = report.studies(tmp_path)
    assert title == "## Budget sweep ([SWEEP.md](SWEEP.md))"
    assert body == "text\n\n### Top-1 %\n\n| a |\n\n![plot](sweep.png)"


def test_toolbox_levels_run_export_and_report(tmp_path, monkeypatch):
    """make bench-toolbox's levels study, RTN only on a random resnet18: ternary and binary cells
    run their integer networks (2-bit codes); the report and plot are written, and a second run
    (resumed) runs nothing."""
    from bench.accuracy import toolbox

    argv = ["--studies", "levels", "--methods", "rtn", "--weights", "random", "--size", "16", "--iters", "2",
            "--act-iters", "1", "--seeds", "1", "--eval-images", "20", "--out", str(tmp_path / "out"),
            "--docs", str(tmp_path / "docs"), "--quiet"]
    toolbox.main(argv)
    records = {r["key"]: r for r in json.loads((tmp_path / "docs" / toolbox.RECORDS).read_text())}
    assert sorted(records) == ["resnet18_W2A4_rtn_s0", "resnet18_W2A4_rtn_weight_levels-binary_s0",
                               "resnet18_W2A4_rtn_weight_levels-ternary_s0"]
    assert records["resnet18_W2A4_rtn_weight_levels-ternary_s0"]["integer"] is not None
    text = (tmp_path / "docs" / "TOOLBOX.md").read_text()
    assert "## Ternary and binary weights" in text and "(integer " in text
    study = next(s for s in toolbox.STUDIES if s.name == "levels")
    assert (tmp_path / "docs" / toolbox.plot_name(study)).stat().st_size > 1000
    assert "## Clipping" not in text        # a study none of this report's cells belongs to,
    assert "## Stochastic rounding" not in text     # and one that only shares the default rtn cell
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*/cells/*.json")}
    toolbox.main(argv)
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*/cells/*.json")}
    assert "another resnet18 checkpoint" not in text
    retrained = {**records["resnet18_W2A4_rtn_weight_levels-binary_s0"], "checkpoint": "0123abcd" * 8}
    both = [*records.values(), retrained]       # a cell run again on a retrained checkpoint: the study keeps
    assert retrained not in toolbox.on_one_checkpoint(study, both)      # the one its other cells ran on
    notes = toolbox.checkpoint_note(study, [retrained if r["options"] == retrained["options"] else r
                                            for r in records.values()], both)
    assert notes == [notes[0]] and notes[0].startswith("rtn W2A4 binary ran on another resnet18 checkpoint "
                                                       "(`0123abcd`") and "most cells here: `random`" in notes[0]
    with pytest.raises(SystemExit, match="quaternary unknown"):
        toolbox.main(["--studies", "quaternary", "--report-only"])
    with pytest.raises(SystemExit, match="--bits W4A4: the chosen studies run none of these; use W2A4"):
        toolbox.main(["--studies", "levels", "--bits", "W4A4", "--report-only"])
    from pyioso.models import train

    monkeypatch.setattr(train, "resolve_weights", lambda *a, **k: pytest.fail("--report-only trained a network"))
    toolbox.main([*argv, "--weights", "trained", "--report-only"])      # a clone's report: nothing trains


def test_every_toolbox_cell_is_a_calibration_setting_pyioso_takes():
    """A study's cell that Config refuses (act_init quantized on a method without an activation
    stage, say, or OSO left off a layer the network lacks) would fail only hours into make
    bench-toolbox: every planned cell builds here."""
    from bench.accuracy import toolbox
    from pyioso.calib import calibrate
    from pyioso.models.tv import build_model

    layers = {net: calibrate.weight_layers(build_model(net, 10))
              for net in {n for study in toolbox.STUDIES for n in study.nets}}
    refused = []
    for study in toolbox.STUDIES:
        for cell in study.cells(1):
            try:
                calibrate.check_oso_off(cell.config(Budget()), layers[cell.net])     # a layer name it lacks
            except PyiosoError as err:
                refused.append(f"{study.name} {cell.key}: {err}")
    assert refused == []


def test_a_toolbox_row_compares_its_columns_on_the_seeds_they_share():
    """Another study's default cells may hold more seeds than a column beside them: the row then
    shows every column on the seeds all of them ran, not a mean beside one seed."""
    from bench.accuracy import toolbox

    study = next(s for s in toolbox.STUDIES if s.name == "rounding")
    cell = {"net": "resnet18", "bits": "W2A4", "method": "rtn", "checkpoint": "c"}
    records = [{**cell, "seed": seed, "options": {}, "fake_quant": 50.0 + seed} for seed in range(3)]
    records.append({**cell, "seed": 0, "options": {"weight_rounding": "stochastic"}, "fake_quant": 40.0})
    nearest, stochastic = study.groups(records, "resnet18", (2, 4), "rtn")
    assert [r["fake_quant"] for r in nearest] == [50.0] and [r["fake_quant"] for r in stochastic] == [40.0]
    only_default = study.groups(records[:3], "resnet18", (2, 4), "rtn")
    assert [len(group) for group in only_default] == [3, 0]


def test_a_finetune_cell_records_the_qat_network(tmp_path, monkeypatch):
    """A cell with the finetune option runs `pyioso finetune` on its calibration and records the
    finetuned network (fake-quant and integer), with its epochs; no weights are left behind."""
    import functools

    from bench.accuracy import cells
    from pyioso.calib import finetune

    monkeypatch.setattr(cells.finetune, "FinetuneConfig", functools.partial(finetune.FinetuneConfig, images=64))
    cell = Cell("resnet18", 2, 4, "rtn", 0, (("weight_levels", "ternary"), (cells.FINETUNE, 1)))
    budget = Budget(iters=2, act_iters=1, images=32, eval_images=20, size=16)
    record = cells.run_cell(cell, budget, "random", tmp_path)
    assert record["key"] == "resnet18_W2A4_rtn_weight_levels-ternary_finetune-1_s0"
    assert len(record["finetune"]) == 1 and record["integer"] is not None and record["agreement"] is not None
    assert not list(tmp_path.rglob("calibrated.pt")) and not list(tmp_path.rglob("artifact"))



def test_paired_gain_pairs_each_column_with_the_base_from_the_committed_records():
    import re
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "scripts/paired_gain.py", "docs/i5000/toolbox.json", "oso_logits",
                          "--base", "docs/i5000/results.csv"], capture_output=True, text=True, check=True).stdout
    assert "| not on the classifier minus the base |" in out
    row = next(line for line in out.splitlines() if line.startswith("| resnet18 | W2A4 | brecq+ioso |"))
    assert row.count("(3 seeds)") == 3          # the study's gain, then each column against brecq
    won, cells = map(int, re.search(r"higher than OSO on the classifier in (\d+) of (\d+) paired cells", out).groups())
    assert 0 < won <= cells
