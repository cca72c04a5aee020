"""The randomized regression (sim/random_layers.py): every kind of op drawn, checked and
recorded; a second run resumes from the record instead of simulating again."""

import json

import pytest

from sim import random_layers


def test_draws_depend_on_seed_and_index_only():
    assert random_layers.draw(3, 17) == random_layers.draw(3, 17) != random_layers.draw(3, 18)


def test_refusals_group_by_reason():
    assert random_layers.reason("kernel 9x9 is larger than the engine's 7x7") == \
        random_layers.reason("kernel 8x8 is larger than the engine's 7x7")


def _run(tmp_path, n, capsys):
    records = tmp_path / "records.jsonl"
    assert random_layers.main(["--n", str(n), "--seed", "0", "--jobs", "2", "--records", str(records),
                               "--summary", str(tmp_path / "summary.md")]) == 0
    capsys.readouterr()
    return [json.loads(line) for line in records.read_text().splitlines()]


def test_every_kind_passes_and_a_rerun_resumes(tmp_path, capsys):
    seed_kinds = {random_layers.draw(0, i)["kind"] for i in range(16)}
    assert seed_kinds == set(random_layers.KINDS), "seed 0 does not draw every kind in 16"
    first = _run(tmp_path, 16, capsys)
    checked = {r["config"]["kind"] for r in first if r["status"] == "passed"}
    assert checked >= {"conv", "depthwise", "max_pool", "add"}, checked
    assert all(r["status"] != "failed" for r in first)
    assert len(_run(tmp_path, 16, capsys)) == 16          # nothing simulated twice
    assert "passed (every output code equal to golden's" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_two_hundred_random_ops(tmp_path, capsys):
    """`make test-full`: 200 draws, none failing (issue 26)."""
    records = _run(tmp_path, 200, capsys)
    assert sum(r["status"] == "passed" for r in records) >= 120
