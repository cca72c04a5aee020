"""`make sim-net CHAIN=1`: test images through a whole integer network on the engine RTL, every
op fed the engine's own output of the ops before it (the host only moves tensors).

Every op (conv/FC, depthwise and grouped convs, residual adds, max and average pools) runs on
the RTL (hw/ops.py); each op's output is checked against golden on the same input, the logits
against golden's whole-network forward, and with a calibration directory (--run) the predicted
classes against the fake-quant network's. Writes build/sim/<net>_chain/summary.json; exits 1
on any mismatch or cycle-model disagreement, 2 on an error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from golden.errors import PyiosoError
from hw import ops
from hw.params import EngineParams
from pyioso import output
from pyioso.cli.types import nonnegative_int, positive_int
from pyioso.data.datasets import FASHION, labelled_images
from pyioso.integer import artifact, intnet, rtn
from pyioso.models import tv, zoo
from sim import layer, runner

HEADERS = ("op", "kind", "input", "outputs", "mismatches", "cycles", "model", "ideal", "utilization")


def run_image(net: intnet.IntNet, x: torch.Tensor, sim: runner.Simulator,
              bar: tqdm | None = None) -> tuple[torch.Tensor, list[dict]]:
    """(logit codes [classes], a sim.layer report per op) of one image's input codes [1, H, W, C]
    through the engine, each op on the engine's outputs of the ops before it."""
    values, reports = {net.input_name: x}, []
    for step in net.steps:
        inputs = [values[name] for name in step.inputs]
        result, seconds = layer.simulate_op(sim, step.op, inputs)
        values[step.output] = result.output
        reports.append(layer.report(step.name, step.op, inputs, result, sim, seconds))
        if bar is not None:
            bar.set_postfix_str(step.name)
            bar.update()
    return values[net.output_name][0, 0, 0, :], reports


def check_network(net: intnet.IntNet, x: torch.Tensor, params: EngineParams) -> None:
    """Plans every op on golden's tensors of one image: the engine's refusals (naming the op)
    before any simulation."""
    values = {net.input_name: x}
    for step in net.steps:
        inputs = [values[name] for name in step.inputs]
        try:
            ops.plan(step.op, inputs, params)
        except PyiosoError as err:
            raise PyiosoError(f"{step.name}: {err}") from err
        values[step.output] = step.run(*inputs)


def _network(args) -> tuple[str, intnet.IntNet, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(name, integer network, test images, labels, fake-quant predictions or None)."""
    if args.run:
        from pyioso.calib import workflow     # the calibrator, only for its fake-quant network

        directory = Path(args.run)
        fake, run, config = workflow.calibrated_network(directory)
        net, _ = artifact.load(directory / workflow.ARTIFACT)
        images, labels = labelled_images(run.data, "test", run.size, args.images, seed=config.seed + 1)
        out = fake.coding(fake.output_name)
        with torch.no_grad():
            predicted = torch.round(fake(images) / out.scale).argmax(1)
        return directory.name, net, images, labels, predicted
    if args.artifact:
        net, doc = artifact.load(args.artifact)
        size = int(doc["network"]["size"])
        images, labels = labelled_images(FASHION, "test", size, args.images, seed=args.seed + 1)
        return f"{doc['network']['name']}_artifact", net, images, labels, None
    if not args.net:
        raise PyiosoError("give --run DIR (a calibration), --artifact DIR or --net NAME")
    name = tv.check_network(args.net)
    net = rtn.build(name, args.size, args.wbits, args.abits, args.seed)
    images, labels = labelled_images(FASHION, "test", args.size, args.images, seed=args.seed + 1)
    return f"{name}_{args.size}", net, images, labels, None


def _table(reports: list[dict]) -> str:
    rows = []
    for r in reports:
        s = r["shape"]
        model = "=" if r["model_cycles"] == r["cycles"] else output.fmt_int(r["model_cycles"] or 0)
        rows.append([r["layer"], r["op"], f"{s['h']}x{s['w']}x{s['c_in']}", output.fmt_int(r["outputs_checked"]),
                     r["mismatches"], output.fmt_int(r["cycles"]), model, output.fmt_int(r["ideal_cycles"]),
                     output.percent(r["utilization"])])
    return output.table(HEADERS, rows, left=3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.chain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=zoo.networks_help())
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--run", help="a calibration directory (`pyioso calibrate --out`): its "
                      "artifact on the engine, its fake-quant network for the classes")
    what.add_argument("--artifact", help="an artifact directory (logits checked against golden)")
    what.add_argument("--net", help="a network with seeded weights, round-to-nearest integers")
    parser.add_argument("--images", type=positive_int, default=10, help="Fashion-MNIST test images (10)")
    parser.add_argument("--size", type=positive_int, default=32, help="input size with --net (32)")
    parser.add_argument("--wbits", type=positive_int, default=4)
    parser.add_argument("--abits", type=positive_int, default=4)
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    params = EngineParams()
    try:
        if args.images < 1:
            raise PyiosoError(f"--images {args.images}: give at least 1")
        name, net, images, labels, fake = _network(args)
        codes = net.quantize_input(images)
        golden_logits = net.forward(codes)[0]
        check_network(net, codes[:1], params)
        sim = layer.engine_simulator(params)
        per_image, reports, seconds = [], [], []
        for i in tqdm(range(len(images)), desc="images", unit="image"):
            tick = time.perf_counter()
            with tqdm(total=len(net.steps), desc=f"image {i}", unit="op", leave=False) as bar:
                logits, reports = run_image(net, codes[i:i + 1], sim, bar)
            seconds.append(time.perf_counter() - tick)
            per_image.append({
                "label": int(labels[i]), "engine_class": int(logits.argmax()),
                "golden_class": int(golden_logits[i].argmax()),
                "fake_quant_class": None if fake is None else int(fake[i]),
                "logits_equal_golden": bool(torch.equal(logits, golden_logits[i])),
                "op_mismatches": sum(r["mismatches"] for r in reports),
                "model_disagreements": sum(not layer.model_agrees(r) for r in reports),
                "cycles": sum(r["cycles"] for r in reports), "wall_seconds": seconds[-1]})
    except (PyiosoError, runner.SimulationError) as err:
        print(f"sim: error: {err}", file=sys.stderr)
        return 2
    print(_table(reports))
    for i, r in enumerate(per_image):
        fq = "" if r["fake_quant_class"] is None else f", fake-quant {r['fake_quant_class']}"
        print(f"image {i}: label {r['label']}, engine {r['engine_class']}, golden {r['golden_class']}{fq}; "
              f"logits {'= golden' if r['logits_equal_golden'] else 'DIFFER from golden'}, "
              f"{r['cycles']:,} cycles, {r['wall_seconds']:.1f} s")
    bad_logits = sum(not r["logits_equal_golden"] for r in per_image)
    bad_ops = sum(r["op_mismatches"] + r["model_disagreements"] for r in per_image)
    classes = [r["fake_quant_class"] for r in per_image]
    fq_agree = None if fake is None else sum(r["engine_class"] == c for r, c in zip(per_image, classes))
    path = runner.ROOT / "build" / "sim" / f"{name}_chain" / "summary.json"
    output.write_json(str(path), {
        "net": name, "images": per_image, "ops": reports, "engine": params.to_json(),
        "logits_equal_golden": len(per_image) - bad_logits,
        "classes_equal_fake_quant": fq_agree, "wall_seconds": time.perf_counter() - start,
        "wall_seconds_per_image": sum(seconds) / len(seconds)})
    fq_line = "" if fq_agree is None else f", classes = fake-quant on {fq_agree}/{len(per_image)}"
    print(f"{name}: {len(net.steps)} ops per image on the engine, logits = golden on "
          f"{len(per_image) - bad_logits}/{len(per_image)} images{fq_line}, "
          f"{sum(seconds) / len(seconds):.1f} s per image; summary: {path.relative_to(runner.ROOT)}")
    failed = bad_logits or bad_ops or (fq_agree is not None and fq_agree < len(per_image))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
