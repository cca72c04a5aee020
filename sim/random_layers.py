"""`python -m sim.random_layers --n N --seed S`: N random conv/FC layers through one engine build,
every output code against golden, every cycle count against the cycle model.

The fixed cases of sim/test_engine.py cover the shapes someone thought of; random draws of shape,
bit widths and ISG grouping find the combinations no one did. Draws the driver (or the table
builder) refuses are counted and skipped: they are not the engine's to run. Exits 1 on any
mismatch (outputs or cycles) or simulator failure. The same seed draws the same layers.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import replace

import golden
from golden.errors import PyiosoError
from golden.spec import PAPER_GROUP_CODES
from hw.params import EngineParams
from pyioso.integer.layer_case import random_case
from sim import runner
from sim.layer import (SCRATCHPADS, engine_simulator, passed as layer_passed,  # `passed` counts the layers below
                       report, simulate, verdict)


def draw(rng: random.Random) -> dict:
    """One layer configuration: geometry, bit widths, a seed for its codes, a grouping style."""
    k = rng.randint(1, 7)
    return dict(h=rng.randint(1, 16), w=rng.randint(1, 16), c_in=rng.randint(1, 70),
                c_out=rng.randint(1, 40), k=k, stride=rng.randint(1, 3), pad=rng.randint(0, k - 1),
                w_bits=rng.randint(2, 8), a_bits=rng.randint(2, 8), seed=rng.randrange(2 ** 31),
                grouping=rng.choice(("paper", "random")))


def random_grouping(rng: random.Random, c_in: int, rows: int) -> tuple[list[int], list[int]]:
    """Three contiguous groups cut at tile boundaries (empty groups allowed), any codes: a valid
    hardware grouping (ARCHITECTURE §4) other than random_case's fixed paper split."""
    tiles = -(-c_in // rows)
    cuts = sorted(rng.randint(0, tiles) for _ in range(2))
    sizes = [rows * n for n in (cuts[0], cuts[1] - cuts[0], tiles - cuts[1])]
    sizes[max(i for i, s in enumerate(sizes) if s)] -= tiles * rows - c_in
    golden.check_hw_grouping(sizes, c_in, rows)
    return sizes, [rng.choice((-1, 0, 1)) for _ in sizes]


def build(cfg: dict, params: EngineParams, rng: random.Random):
    """(name, input codes, integer layer) of a configuration.

    A "random" grouping replaces the codes of random_case's layer without rebuilding its tables:
    the integer layer (codes, M, B, F) is still fully defined, and golden and the RTL must agree
    on it bit for bit whatever float layer the tables came from.
    """
    x, conv = random_case(cfg["h"], cfg["w"], cfg["c_in"], cfg["c_out"], cfg["k"], cfg["stride"],
                          cfg["pad"], cfg["w_bits"], cfg["a_bits"], cfg["seed"], params.isg_shift)
    sizes, codes = [], PAPER_GROUP_CODES
    if cfg["grouping"] == "random":
        sizes, codes = random_grouping(rng, cfg["c_in"], params.rows)
        conv = replace(conv, isg_codes=golden.channel_codes(sizes, codes))
    name = (f"{cfg['h']}x{cfg['w']}x{cfg['c_in']}->{cfg['c_out']} k{cfg['k']} s{cfg['stride']} "
            f"p{cfg['pad']} W{cfg['w_bits']}A{cfg['a_bits']} ISG {cfg['grouping']}"
            + (f" sizes {sizes} codes {codes}" if sizes else ""))
    return name, x, conv


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.random_layers", description=__doc__)
    parser.add_argument("--n", type=int, default=30, help="layer configurations to draw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scratchpads", choices=SCRATCHPADS, default="default",
                        help="the engine's scratchpad depths: small ones split every layer into "
                        "many passes")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    params = EngineParams()
    sim = engine_simulator(params, SCRATCHPADS[args.scratchpads])
    passed = failed = refused = 0
    for i in range(args.n):
        cfg = draw(rng)
        name = f"#{i} {cfg}"
        try:
            label, x, conv = build(cfg, params, rng)
            name = f"#{i} {label}"
            result, seconds = simulate(sim, conv, x)
        except PyiosoError as err:
            refused += 1
            print(f"REFUSED {name}: {err}")
            continue
        except runner.SimulationError as err:
            failed += 1
            print(f"FAIL {name}: {err}")
            continue
        rep = report(name, conv, [x], result, sim, seconds)
        print(verdict(rep), flush=True)
        ok = layer_passed(rep)
        passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed ({refused} of {args.n} draws refused)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
