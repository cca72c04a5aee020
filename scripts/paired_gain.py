#!/usr/bin/env python
"""A toolbox study's gain over its default, paired by seed: each other value's top-1 minus the
default's on the same seed (same calibration images and batches), from the committed records.
The TOOLBOX.md tables give each column's mean over seeds; this gives the difference they compare.

    .venv/bin/python scripts/paired_gain.py docs/i5000/toolbox.json oso_logits
    .venv/bin/python scripts/paired_gain.py docs/toolbox.json oso_logits --checkpoint 403f423b
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.accuracy.cells import bits_label  # noqa: E402
from bench.accuracy.report import paired, signed  # noqa: E402
from bench.accuracy.toolbox import STUDIES  # noqa: E402
from pyioso import output  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", type=Path, help="a toolbox.json (docs/toolbox.json, docs/i5000/toolbox.json)")
    p.add_argument("study", choices=[s.name for s in STUDIES])
    p.add_argument("--checkpoint", default="403f423b", help="the checkpoint's SHA-256 prefix (default: 403f423b)")
    args = p.parse_args()
    study = next(s for s in STUDIES if s.name == args.study)
    records = [r for r in json.loads(args.records.read_text()) if r["checkpoint"].startswith(args.checkpoint)]
    heads = ["net", "bits", "method", *(f"{c} minus {study.columns[0]}" for c in study.columns[1:])]
    body = []
    for net in study.nets:
        for bits in study.bits:
            for method in study.methods:
                default, *others = [{r["seed"]: r["fake_quant"] for r in group}
                                    for group in study.groups(records, net, bits, method)]
                gains = [paired(other, default) for other in others]
                if any(gains):
                    body.append([net, bits_label(*bits), method,
                                 *(f"{signed(g)}, {sum(d > 0 for d in g)} higher" if g else "–" for g in gains)])
    print(output.md_table(heads, body))


if __name__ == "__main__":
    main()
