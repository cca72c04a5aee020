"""`python -m sim.random_layers --n N --seed S`: N random ops through one engine build, every
output code against golden, every cycle count against the cycle model.

The fixed cases of sim/test_engine.py cover the shapes someone thought of; random draws find the
combinations no one did: dense, grouped and depthwise convs (3x3 ones run in DW mode) over
shapes, strides, padding, kernels, bit widths and ISG groupings, max and average pools, residual
adds. Draw `i` of seed `S` depends on (S, i) only, so a run resumes where it stopped (results
are appended to build/sim/random/<scratchpads>_seed<S>.jsonl as they come; a failed draw is
simulated again, so a fix gets its check) and runs on several processes at once. Draws the
driver or golden refuses are counted by reason: they are not the engine's to run. Exits 1 on
any mismatch (outputs or cycles) or simulator failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

import golden
from golden.errors import PyiosoError
from golden.layers import Requant
from golden.spec import W_M
from hw.params import EngineParams
from pyioso import output, parallel
from pyioso.cli.types import nonnegative_int, positive_int
from pyioso.integer.layer_case import random_case
from sim import runner
from sim.layer import SCRATCHPADS, engine_simulator, passed, report, simulate_op, verdict

KINDS = {"conv": 5, "grouped": 1, "depthwise": 2, "max_pool": 1, "avg_pool": 1, "add": 1}   # odds


def draw(seed: int, index: int) -> dict:
    """Op configuration `index` of `seed`: its kind, geometry, bit widths and a seed for its codes."""
    rng = random.Random(f"{seed}:{index}")
    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    k = 3 if kind == "depthwise" and rng.random() < 0.7 else rng.randint(1, 7)
    cfg = dict(kind=kind, h=rng.randint(1, 16), w=rng.randint(1, 16), c=rng.randint(1, 70),
               c_out=rng.randint(1, 40), k=k, stride=rng.randint(1, 3), pad=rng.randint(0, k - 1),
               w_bits=rng.randint(2, 8), a_bits=rng.randint(2, 8), seed=rng.randrange(2 ** 31))
    if kind == "conv":
        cfg["grouping"] = rng.choice(("paper", "random"))
    if kind == "grouped":
        cfg["groups"] = rng.choice((2, 3, 4))
        cfg["c"], cfg["c_out"] = cfg["groups"] * -(-cfg["c"] // cfg["groups"]), cfg["groups"] * rng.randint(1, 12)
    return cfg


def random_grouping(rng: random.Random, c_in: int, rows: int) -> tuple[list[int], list[int]]:
    """Three contiguous groups cut at tile boundaries (empty groups allowed), any codes: a valid
    hardware grouping (ARCHITECTURE §4) other than random_case's fixed paper split."""
    tiles = -(-c_in // rows)
    cuts = sorted(rng.randint(0, tiles) for _ in range(2))
    sizes = [rows * n for n in (cuts[0], cuts[1] - cuts[0], tiles - cuts[1])]
    sizes[max(i for i, s in enumerate(sizes) if s)] -= tiles * rows - c_in
    golden.check_hw_grouping(sizes, c_in, rows)
    return sizes, [rng.choice((-1, 0, 1)) for _ in sizes]


def _requant(rng: random.Random, channels: int, bits: int) -> Requant:
    lo = rng.randint(0, 2 ** bits - 2)
    multipliers = [rng.randrange(-(2 ** (W_M - 1)), 2 ** (W_M - 1)) for _ in range(channels)]
    return Requant(torch.tensor(multipliers), torch.zeros(channels, dtype=torch.int64),
                   rng.randint(16, 30), rng.randint(0, 2 ** bits - 1), bits, lo, rng.randint(lo + 1, 2 ** bits - 1))


def _codes(rng: random.Random, shape, bits: int) -> torch.Tensor:
    return torch.randint(0, 2 ** bits, shape, generator=torch.Generator().manual_seed(rng.randrange(2 ** 31)))


def build(cfg: dict, params: EngineParams) -> tuple[str, object, list[torch.Tensor]]:
    """(name, golden op, input codes) of a configuration. A "random" ISG grouping replaces the
    codes of random_case's layer without rebuilding its tables: the integer layer is still fully
    defined, and golden and the RTL must agree on it bit for bit whatever float layer the
    tables came from."""
    rng = random.Random(cfg["seed"])
    kind, (h, w, c), bits = cfg["kind"], (cfg["h"], cfg["w"], cfg["c"]), cfg["a_bits"]
    geometry = f"{h}x{w}x{c} k{cfg['k']} s{cfg['stride']} p{cfg['pad']}"
    window = ((cfg["k"],) * 2, (cfg["stride"],) * 2, (cfg["pad"],) * 2)
    if kind == "max_pool":
        return f"max pool {geometry} A{bits}", golden.MaxPool(*window, bits), [_codes(rng, (1, h, w, c), bits)]
    if kind == "avg_pool":
        op = golden.AvgPool(*window, bits, rng.randint(0, 2 ** bits - 1), _requant(rng, 1, bits))
        return f"avg pool {geometry} A{bits}", op, [_codes(rng, (1, h, w, c), bits)]
    if kind == "add":
        op = golden.Add((rng.randint(0, 2 ** bits - 1), rng.randint(0, 2 ** bits - 1)), (bits, bits),
                        _requant(rng, 2, bits))
        return f"add {h}x{w}x{c} A{bits}", op, [_codes(rng, (1, h, w, c), bits) for _ in range(2)]
    groups = {"depthwise": c, "grouped": cfg.get("groups", 1)}.get(kind, 1)
    c_out = c if kind == "depthwise" else cfg["c_out"]
    x, conv = random_case(h, w, c, c_out, cfg["k"], cfg["stride"], cfg["pad"], cfg["w_bits"], bits,
                          cfg["seed"], params.isg_shift, groups)
    name = f"{kind} {geometry}->{c_out}" + (f" g{groups}" if kind == "grouped" else "") + \
        f" W{cfg['w_bits']}A{bits}"
    if cfg.get("grouping") == "random":
        sizes, codes = random_grouping(rng, c, params.rows)
        conv = replace(conv, isg_codes=golden.channel_codes(sizes, codes))
        name += f" ISG sizes {sizes} codes {codes}"
    return name, conv, [x]


def reason(message: str) -> str:
    """A refusal's message with its numbers taken out: refusals group by reason."""
    return re.sub(r"-?\d+", "N", message)[:160]


_SIM = None


def _start_worker(params: EngineParams, scratchpads: str) -> None:
    global _SIM
    torch.set_num_threads(1)
    _SIM = engine_simulator(params, SCRATCHPADS[scratchpads])


def run_one(seed: int, index: int) -> dict:
    """One draw through the RTL in this worker's simulator: its record."""
    cfg = draw(seed, index)
    record = {"index": index, "config": cfg}
    try:
        name, op, inputs = build(cfg, _SIM.params)
        record["name"] = name
        result, seconds = simulate_op(_SIM, op, inputs)
    except PyiosoError as err:
        return record | {"status": "refused", "reason": str(err)}
    except runner.SimulationError as err:
        return record | {"status": "failed", "reason": str(err)}
    rep = report(name, op, inputs, result, _SIM, seconds)
    return record | {"status": "passed" if passed(rep) else "failed", "verdict": verdict(rep),
                     "kind": rep["op"], "cycles": rep["cycles"], "model_cycles": rep["model_cycles"],
                     "mismatches": rep["mismatches"], "outputs": rep["outputs_checked"]}


def summarize(records: list[dict]) -> dict:
    status = Counter(r["status"] for r in records)
    kinds = Counter((r["config"]["kind"], r["status"]) for r in records)
    return {"draws": len(records), **{s: status[s] for s in ("passed", "failed", "refused")},
            "outputs_checked": sum(r.get("outputs", 0) for r in records),
            "model_disagreements": sum(1 for r in records if r["status"] != "refused"
                                       and r.get("model_cycles") not in (None, r.get("cycles"))),
            "by_kind": {k: {s: kinds[(k, s)] for s in ("passed", "failed", "refused")} for k in KINDS},
            "refusals": dict(Counter(reason(r["reason"]) for r in records
                                     if r["status"] == "refused").most_common())}


def summary_markdown(summary: dict, command: str) -> str:
    rows = [[k, *(output.fmt_int(v[s]) for s in ("passed", "failed", "refused"))]
            for k, v in summary["by_kind"].items()]
    refusals = [[f"`{why}`", output.fmt_int(n)] for why, n in summary["refusals"].items()]
    return "\n\n".join([
        "# Random ops through the RTL",
        f"`{command}`: {output.fmt_int(summary['draws'])} draws, {output.fmt_int(summary['passed'])} "
        f"passed (every output code equal to golden's, {output.fmt_int(summary['outputs_checked'])} "
        f"codes in all, CYCLES equal to the cycle model), {summary['failed']} failed, "
        f"{summary['model_disagreements']} cycle-model disagreements, "
        f"{output.fmt_int(summary['refused'])} refused by the driver or golden (by reason below). "
        "Generated by sim/random_layers.py.",
        output.md_table(["op", "passed", "failed", "refused"], rows),
        "Refusals by reason (numbers taken out):",
        output.md_table(["reason", "draws"], refusals) if refusals else "none"]) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.random_layers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=positive_int, default=30, help="op configurations to draw")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--scratchpads", choices=SCRATCHPADS, default="default",
                        help="the engine's scratchpad depths: small ones split every op into "
                        "many passes")
    parser.add_argument("--jobs", type=positive_int, default=len(os.sched_getaffinity(0)),
                        help="simulator processes at once (default: the CPUs this process may use)")
    parser.add_argument("--ray", help=parallel.RAY_HELP)
    parser.add_argument("--summary", help="also write the summary as Markdown to this file")
    parser.add_argument("--records", help="the JSON-lines record of the draws, read to resume "
                        "(default build/sim/random/<scratchpads>_seed<S>.jsonl)")
    args = parser.parse_args(argv)
    params = EngineParams()
    engine_simulator(params, SCRATCHPADS[args.scratchpads])     # built once, before the workers
    log = Path(args.records) if args.records else \
        runner.BUILD_ROOT / "random" / f"{args.scratchpads}_seed{args.seed}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if log.is_file():
        for line in log.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[record["index"]] = record
    todo = [i for i in range(args.n) if i not in done or done[i]["status"] == "failed"]
    with open(log, "a") as sink:
        bar = tqdm(total=args.n, initial=args.n - len(todo), desc="random ops", unit="op")
        for record in parallel.unordered(run_one, [(args.seed, i) for i in todo], args.jobs, args.ray,
                                         _start_worker, (params, args.scratchpads)):
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            done[record["index"]] = record
            bar.update()
            if record["status"] == "failed":
                tqdm.write(f"FAIL #{record['index']} {record.get('name', record['config'])}: "
                           f"{record.get('verdict', record.get('reason'))}")
        bar.close()
    summary = summarize([done[i] for i in range(args.n)])
    command = f"make sim-random N={args.n} SEED={args.seed} SCRATCHPADS={args.scratchpads}"
    output.write_json(str(log.with_suffix(".summary.json")), {"command": command, **summary})
    if args.summary:
        text = summary_markdown(summary, command)
        output.atomic_write(args.summary, lambda f: f.write(text.encode()))
    print(f"{summary['passed']} passed, {summary['failed']} failed, {summary['model_disagreements']} "
          f"cycle-model disagreements ({summary['refused']} of {args.n} draws refused); "
          f"records: {log}")
    for why, n in list(summary["refusals"].items())[:10]:
        print(f"  refused {n:>5}: {why}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
