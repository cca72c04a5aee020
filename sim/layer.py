"""`make sim`: one conv/FC layer through the engine RTL (Verilator), every output against golden.

The host driver turns the layer into passes and commands; the harness plays them into the
engine's command stream and records the responses; this module compares every output code with
golden.conv bit for bit and the engine's CYCLES counter with the analytical cycle model
(hw/cycles.py), and writes build/sim/<name>/report.json. Either disagreement fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import golden
from golden.errors import PyiosoError
from hw import cycles as cycle_model, driver, ops
from hw.engine import Engine
from hw.host import Csr, Depths
from hw.params import EngineParams
from pyioso import output
from pyioso.cli.types import nonnegative_int, positive_int
from pyioso.integer import artifact, intnet
from sim import runner

HARNESS = Path(__file__).resolve().parent / "engine_harness.sv"
COMMAND_DIGITS = 39         # hex digits of one 154-bit harness word

HARNESS_OPS = {"send": 0, "wait": 1, "end": 2}

# Scratchpads a few hundred words deep: layers of a dozen pixels split into several output-row
# slices and channel-tile chunks, so tests reach every way of splitting a layer in seconds (the
# default build splits only at ImageNet sizes, where issue 27's bug hid).
SMALL_DEPTHS = Depths(act=256, weight=4096, acc=48, out=96, channels=32, tiles=8)
SCRATCHPADS = {"default": Depths(), "small": SMALL_DEPTHS}


@dataclass(frozen=True)
class Result:
    output: torch.Tensor        # [1, Ho, Wo, C_out] codes from the RTL
    cycles: int                 # sum over passes of the engine's CYCLES counter
    busy: int
    stalls: int
    passes: int


def command_file(passes: list[driver.Pass]) -> list[int]:
    """Harness words {op, command} for all passes: load, start, wait, read back; then end."""
    words, previous = [], None

    def put(op, write=0, space=0, addr=0, data=0):
        words.append((HARNESS_OPS[op] << 152) | (data << 24) | (addr << 4) | (space << 1) | write)

    for p in passes:
        for cmd in driver.commands(p, previous):
            put("send", *cmd)
        put("wait")
        for cmd in driver.readback(p):
            put("send", *cmd)
        previous = p
    put("end")
    return words


def write_hex(path: Path, words: list[int], digits: int) -> None:
    path.write_text("".join(f"{w:0{digits}x}\n" for w in words))


def read_hex(path: Path) -> list[int]:
    return [int(line, 16) for line in path.read_text().split()]


def collect(passes: list[driver.Pass], responses: list[int], c_out: int, cols: int) -> Result:
    """Split the response words back into passes and place each pass's outputs."""
    first = passes[0]
    ho = max(p.row1 for p in passes)
    out = torch.zeros(1, ho, first.descriptor[Csr.WO], c_out, dtype=torch.int64)
    at, cycles, busy, stalls = 0, 0, 0, 0
    for p in passes:
        words = responses[at:at + p.out_words]
        c, b, s = responses[at + p.out_words:at + p.out_words + 3]
        at += p.out_words + 3
        block = driver.unpack_outputs(p, words, cols)
        k0, k1 = p.nt0 * cols, min(c_out, p.nt1 * cols)
        out[0, p.row0:p.row1, :, k0:k1] = block[:, :, :k1 - k0]
        cycles, busy, stalls = cycles + c, busy + b, stalls + s
    if at != len(responses):
        raise RuntimeError(f"the harness recorded {len(responses)} responses, expected {at}")
    return Result(out, cycles, busy, stalls, len(passes))


def model_cycles(op, x_shape, params: EngineParams, depths: Depths) -> tuple[int | None, str | None]:
    """(the cycle model's CYCLES, None), or (None, why the model does not cover the op)."""
    try:
        return cycle_model.op_cycles(op, x_shape, params, depths).cycles, None
    except PyiosoError as err:
        return None, str(err)


def first_mismatch(got: torch.Tensor, want: torch.Tensor) -> dict | None:
    diff = (got != want).nonzero()
    if not len(diff):
        return None
    n, h, w, c = diff[0].tolist()
    return {"n": n, "h": h, "w": w, "c": c, "rtl": int(got[n, h, w, c]), "golden": int(want[n, h, w, c])}


def report(name: str, op, inputs: list[torch.Tensor], result: Result, sim: runner.Simulator,
           seconds: float) -> dict:
    """The op's outcome on `sim`: outputs against golden, the RTL counters next to the cycle
    model of the same build (parameters and scratchpads)."""
    params, depths = sim.params, sim.depths
    want = intnet.run_op(op, *inputs)
    mismatches = int((result.output != want).sum())
    x = inputs[0]
    shape = ops.op_shape(op, x.shape)
    ideal = cycle_model.op_ideal(op, x.shape, params, depths)
    model, model_note = model_cycles(op, x.shape, params, depths)
    if isinstance(op, golden.Conv):
        bits = {"weights": op.w_bits, "activations": op.in_bits, "outputs": op.requant.bits}
    else:
        bits = {"weights": None, "activations": getattr(op, "bits", None) or getattr(op, "in_bits", None),
                "outputs": getattr(op, "bits", None) or op.requant.bits}
    return {
        "layer": name, "op": ops.KINDS[type(op)],
        "shape": {"h": x.shape[1], "w": x.shape[2], "c_in": shape.c_in, "c_out": shape.c_out,
                  "kernel": list(shape.kernel), "stride": list(shape.stride),
                  "padding": list(shape.padding), "groups": shape.groups},
        "bits": bits,
        "outputs_checked": want.numel(), "mismatches": mismatches,
        "first_mismatch": first_mismatch(result.output, want),
        "passes": result.passes, "cycles": result.cycles, "ideal_cycles": ideal,
        "model_cycles": model, "model_note": model_note,
        "utilization": ideal / result.cycles if result.cycles else 0.0,
        "busy_cycles": result.busy, "stall_cycles": result.stalls,
        "sim_wall_seconds": seconds, "engine": params.to_json(), "scratchpads": depths.to_json(),
    }


def engine_simulator(params: EngineParams, depths: Depths = Depths()) -> runner.Simulator:
    """The engine inside its harness, built once per configuration (cached)."""
    return runner.build(Engine(params, depths), "engine", params, harness=HARNESS)


def simulate(sim: runner.Simulator, layer: golden.Conv, x: torch.Tensor) -> tuple[Result, float]:
    """Runs one layer on one image through the RTL; returns the result and the wall seconds."""
    return simulate_op(sim, layer, [x])


def simulate_op(sim: runner.Simulator, op, inputs: list[torch.Tensor],
                edit=None) -> tuple[Result, float]:
    """Runs one integer-network op (hw/ops.py) on its input codes through the RTL. `edit`, a
    test's fault injection, may change the passes' memory images before they are sent."""
    passes = ops.plan(op, inputs, sim.params, sim.depths)
    if edit is not None:
        edit(passes)
    channels = ops.output_shape(op, inputs[0].shape)[3]
    with tempfile.TemporaryDirectory(prefix="run-", dir=sim.build_dir) as work:
        cmds, resps = Path(work) / "commands.hex", Path(work) / "responses.hex"
        write_hex(cmds, command_file(passes), COMMAND_DIGITS)
        start = time.perf_counter()
        runner.run(sim, "sim.tb_engine", plusargs=(f"+cmds={cmds}", f"+resps={resps}"), quiet=True)
        seconds = time.perf_counter() - start
        responses = read_hex(resps)
    return collect(passes, responses, channels, sim.params.cols), seconds


SHAPE_FIELDS = ("H", "W", "CIN", "COUT", "K", "STRIDE", "PAD", "GROUPS")


def _case(args, shift: int) -> tuple[str, golden.Conv, torch.Tensor]:
    from pyioso.integer.layer_case import build_case, random_case

    if args.shape:
        values = args.shape.split(",")
        if len(values) not in (7, 8) or not all(v.strip().isdigit() for v in values):
            raise PyiosoError(f"SHAPE={args.shape!r}: give seven or eight integers "
                              "H,W,CIN,COUT,K,STRIDE,PAD[,GROUPS]")
        for name, v in zip(SHAPE_FIELDS, values):
            if int(v) < (name != "PAD"):
                raise PyiosoError(f"SHAPE={args.shape!r}: {name}={int(v)} is out of range: use "
                                  f"{'0' if name == 'PAD' else '1'} or more")
        h, w, c_in, c_out, k, stride, pad, *groups = (int(v) for v in values)
        x, layer = random_case(h, w, c_in, c_out, k, stride, pad, args.wbits, args.abits, args.seed,
                               shift, *groups)
        return f"shape_{args.shape.replace(',', 'x')}", layer, x
    if args.artifact:
        doc, runs, _ = artifact.layer_runs(args.artifact, args.seed + 1)
        run = next((r for r in runs if r.path == args.layer), None)
        if run is None:
            raise PyiosoError(f"the artifact has no conv/FC layer {args.layer!r}; its layers: "
                              f"{', '.join(r.path for r in runs)}")
        return f"{artifact.label(doc)}_{args.layer}", run.layer, run.x
    case = build_case(args.layer, w_bits=args.wbits, a_bits=args.abits, batch=1, seed=args.seed,
                      isg_shift=shift)
    return args.layer, case.layer, case.x


def model_agrees(rep: dict) -> bool:
    """The cycle model equals the RTL counter, or does not cover the layer (model_note says why)."""
    return rep["model_cycles"] in (None, rep["cycles"])


def passed(rep: dict) -> bool:
    return not rep["mismatches"] and model_agrees(rep)


def verdict(rep: dict) -> str:
    model = ("= cycle model" if rep["model_cycles"] == rep["cycles"] else
             "cycle model: not covered" if rep["model_cycles"] is None else
             f"cycle model {rep['model_cycles']:,}")
    head = (f"{rep['layer']}: {rep['outputs_checked'] - rep['mismatches']:,}/{rep['outputs_checked']:,} "
            f"outputs bit-exact, {rep['cycles']:,} cycles {model} (ideal {rep['ideal_cycles']:,}, "
            f"utilization {100 * rep['utilization']:.2f}%, {rep['passes']} pass(es)), "
            f"sim {rep['sim_wall_seconds']:.1f} s")
    if passed(rep):
        return "PASS " + head
    lines = [f"FAIL {head}"]
    if not model_agrees(rep):
        lines.append(f"  the RTL counted {rep['cycles']:,} cycles, the cycle model "
                     f"(hw/cycles.py) {rep['model_cycles']:,}")
    if rep["mismatches"]:
        first = rep["first_mismatch"]
        lines.append(f"  first mismatch at (n={first['n']}, h={first['h']}, w={first['w']}, "
                     f"c={first['c']}): RTL {first['rtl']}, golden {first['golden']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.layer", description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--layer", help="a layer name from `pyioso layers` (alias or NET:PATH)")
    what.add_argument("--shape", help="H,W,CIN,COUT,K,STRIDE,PAD[,GROUPS] of a seeded random conv "
                      "(GROUPS=CIN=COUT: depthwise)")
    parser.add_argument("--wbits", type=positive_int, default=4)
    parser.add_argument("--abits", type=positive_int, default=4)
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--lanes", type=positive_int, default=EngineParams().lanes)
    parser.add_argument("--no-isg", action="store_true", help="the engine built without the IOSO unit")
    parser.add_argument("--artifact", help="a calibrated artifact directory: --layer is one of its "
                        "conv/FC layers, with its tables and real activations")
    args = parser.parse_args(argv)
    try:
        if args.artifact and not args.layer:
            raise PyiosoError("--artifact needs --layer PATH (a conv/FC of the artifact)")
        params = EngineParams(lanes=args.lanes, isg=not args.no_isg)
        name, layer, x = _case(args, params.isg_shift if params.isg else 0)
        driver.plan(layer, x, params)           # refuse what the engine cannot run, before building
        sim = engine_simulator(params)
        result, seconds = simulate(sim, layer, x)
    except (PyiosoError, runner.SimulationError) as err:
        print(f"sim: error: {err}", file=sys.stderr)
        return 2
    name += "" if params.isg else "_no_isg"
    rep = report(name, layer, [x], result, sim, seconds)
    path = runner.ROOT / "build" / "sim" / name / "report.json"
    output.write_json(str(path), rep)
    print(verdict(rep))
    print(f"report: {path.relative_to(runner.ROOT)}")
    return 0 if passed(rep) else 1


if __name__ == "__main__":
    sys.exit(main())
