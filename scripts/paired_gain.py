#!/usr/bin/env python
"""A toolbox study's gain over its default, paired by seed: each other value's top-1 minus the
default's on the same seed (same calibration images and batches), from the committed records.
The TOOLBOX.md tables give each column's mean over seeds; this gives the difference they compare.

    .venv/bin/python scripts/paired_gain.py docs/i5000/toolbox.json oso_logits
    .venv/bin/python scripts/paired_gain.py docs/toolbox.json oso_logits --checkpoint 403f423b
    .venv/bin/python scripts/paired_gain.py docs/i5000/toolbox.json oso_logits --base docs/i5000/results.csv

--base also pairs every column with the rounding-only method under it (brecq+ioso: brecq) from that
results.csv, and the last line counts the paired cells where each value beat the default.
"""

import csv

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.accuracy.cells import bits_label  # noqa: E402
from bench.accuracy.report import base_of, paired, signed  # noqa: E402
from bench.accuracy.toolbox import STUDIES  # noqa: E402
from pyioso import output  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", type=Path, help="a toolbox.json (docs/toolbox.json, docs/i5000/toolbox.json)")
    p.add_argument("study", choices=[s.name for s in STUDIES])
    p.add_argument("--checkpoint", default="403f423b", help="the checkpoint's SHA-256 prefix (default: 403f423b)")
    p.add_argument("--base", type=Path, help="a results.csv holding the rounding-only methods' grid cells")
    args = p.parse_args()
    study = next(s for s in STUDIES if s.name == args.study)
    records = [r for r in json.loads(args.records.read_text()) if r["checkpoint"].startswith(args.checkpoint)]
    heads = ["net", "bits", "method", *(f"{c} minus {study.columns[0]}" for c in study.columns[1:])]
    if args.base:
        heads += [f"{c} minus the base" for c in study.columns]
        grid = [r for r in csv.DictReader(args.base.open()) if not r["options"]
                and r["checkpoint"].startswith(args.checkpoint)]
    body, wins = [], [[] for _ in study.columns[1:]]
    for net in study.nets:
        for bits in study.bits:
            for method in study.methods:
                default, *others = [{r["seed"]: r["fake_quant"] for r in group}
                                    for group in study.groups(records, net, bits, method)]
                gains = [paired(other, default) for other in others]
                if not any(gains):
                    continue
                for won, g in zip(wins, gains):
                    won += [d > 0 for d in g]
                row = [net, bits_label(*bits), method, *map(_cell, gains)]
                if args.base:
                    base = {int(r["seed"]): float(r["fake_quant"]) for r in grid if r["net"] == net
                            and r["bits"] == bits_label(*bits) and r["method"] == base_of(method)}
                    row += [_cell(paired(column, base)) for column in (default, *others)]
                body.append(row)
    print(output.md_table(heads, body))
    for column, won in zip(study.columns[1:], wins):
        print(f"\n{column}: higher than {study.columns[0]} in {sum(won)} of {len(won)} paired cells")


def _cell(g: list[float]) -> str:
    return f"{signed(g)}, {sum(d > 0 for d in g)} higher" if g else "–"


if __name__ == "__main__":
    main()
