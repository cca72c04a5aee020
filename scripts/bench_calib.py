#!/usr/bin/env python
"""`make bench-calib`: block reconstruction speed and loss, pyioso next to the BRECQ reference.

For each block, the same resnet18 (seeded weights, or --checkpoint), the same Fashion-MNIST
calibration images, batch and iteration count, and the same torch thread count run through
BRECQ's block_reconstruction (scripts/brecq_ref.py, a local copy made by scripts/fetch_reference.sh brecq)
and through pyioso's BRECQ weight stage, each in its own process (so peak memory is its own),
alternating, in one run. Both sides quantize the weights on pyioso's grid (symmetric per channel,
the hardware's), so that they solve the same problem from the same start; BRECQ also runs on its
own asymmetric grid, for reference. Reports iterations per second of the optimization loop, the
ratio, peak memory, and the reconstruction loss after hard rounding over all calibration images;
pyioso's one-off kernel build (torch.compile, cached on disk) is recorded apart, as BRECQ's setup
is. Writes build/bench/calib.json and calib.png.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench"


def pyioso_side(args: argparse.Namespace) -> dict:
    import torch

    from pyioso.calib import calibrate, qnet
    from pyioso.data.datasets import calibration_images
    from pyioso.models.weights import RANDOM, load_model
    from pyioso.quant import rounding

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rounding.build_kernels()
    compile_s = time.perf_counter() - start
    images = calibration_images(args.images, args.size, args.seed)
    model = load_model("resnet18", str(args.checkpoint) if args.checkpoint else RANDOM, 10, args.seed)
    net = qnet.build(model, images[:64], args.wbits, 8)
    config = calibrate.Config(method="brecq", w_bits=args.wbits, a_bits=None, iters=args.iters,
                              batch=args.batch, seed=args.seed)
    history = calibrate.Calibrator(net, images, config, progress=False, only={args.block},
                                   loss_images=None).run()
    entry = next(e for e in history.segments if e["segment"] == args.block)
    return {"impl": "pyioso", "block": args.block, "iters": args.iters, "threads": args.threads,
            "loop_s": entry["seconds"], "it_per_s": args.iters / entry["seconds"], "compile_s": compile_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "loss_before": entry["loss_before"], "loss_after": entry["loss_after"]}


def _side(impl: str, block: str, args: argparse.Namespace, grid: str = "pyioso") -> dict:
    out = OUT / f"{impl}_{grid}_{block}.json"
    common = ["--iters", str(args.iters), "--block", block, "--threads", str(args.threads),
              "--batch", str(args.batch), "--images", str(args.images), "--size", str(args.size),
              "--seed", str(args.seed), "--wbits", str(args.wbits), "--json", str(out)]
    if args.checkpoint:
        common += ["--checkpoint", str(args.checkpoint)]
    script = ["scripts/brecq_ref.py", "--brecq", str(args.brecq), "--grid", grid] if impl == "brecq" else \
        ["scripts/bench_calib.py", "--side", "pyioso"]
    subprocess.run([sys.executable, *script, *common], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blocks", default="layer1.0,layer2.0,layer3.0,layer4.0",
                   help="resnet18 blocks (comma separated; default one per stage)")
    p.add_argument("--block", help=argparse.SUPPRESS)
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wbits", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="torch threads for both sides (default 1)")
    p.add_argument("--checkpoint", type=Path, help="resnet18 state_dict (default: seeded weights)")
    p.add_argument("--brecq", type=Path, default=ROOT / "build" / "brecq")
    args = p.parse_args(argv)
    if args.side == "pyioso":
        result = pyioso_side(args)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    from pyioso import output
    from pyioso.models import train

    start = time.perf_counter()
    rows, results = [], []
    for block in tqdm(args.blocks.split(","), desc="bench-calib", unit="block"):
        brecq, own_grid = _side("brecq", block, args), _side("brecq", block, args, grid="brecq")
        ours = _side("pyioso", block, args)
        ratio = ours["it_per_s"] / brecq["it_per_s"]
        results.append({"block": block, "brecq": brecq, "brecq_own_grid": own_grid, "pyioso": ours,
                        "speedup": ratio})
        rows.append(_row(block, brecq, ours, own_grid))
    total = {k: {"it_per_s": len(results) * args.iters / sum(r[k]["loop_s"] for r in results),
                 "loss_after": sum(r[k]["loss_after"] for r in results),
                 "peak_rss_mb": max(r[k]["peak_rss_mb"] for r in results)}
             for k in ("brecq", "brecq_own_grid", "pyioso")}
    rows.append(_row("all blocks", total["brecq"], total["pyioso"], total["brecq_own_grid"]))
    print(output.table(["block", "BRECQ it/s", "pyioso it/s", "speedup", "BRECQ loss", "pyioso loss",
                        "BRECQ loss, own grid", "BRECQ MB", "pyioso MB"], rows, left=1))
    cpu = train.cpu_model()
    print(f"On {cpu} (ratios differ between CPU models). Same weight grid on both sides (pyioso's symmetric "
          "one; BRECQ's own asymmetric grid for reference). 'all blocks': iterations over the summed loop "
          "seconds, losses summed.")
    output.write_json(str(OUT / "calib.json"), {"settings": {k: str(v) for k, v in vars(args).items()}, "cpu": cpu,
                                                 "results": results, "all_blocks": total,
                                                 "wall_s": time.perf_counter() - start})
    _plot(results)
    print(f"bench: {OUT / 'calib.json'}, {OUT / 'calib.png'}")
    return 0


def _row(name: str, brecq: dict, ours: dict, own_grid: dict) -> list[str]:
    return [name, f"{brecq['it_per_s']:.1f}", f"{ours['it_per_s']:.1f}",
            f"{ours['it_per_s'] / brecq['it_per_s']:.2f}x", f"{brecq['loss_after']:.4f}",
            f"{ours['loss_after']:.4f}", f"{own_grid['loss_after']:.4f}",
            f"{brecq['peak_rss_mb']:.0f}", f"{ours['peak_rss_mb']:.0f}"]


def _plot(results: list[dict]) -> None:
    from matplotlib.figure import Figure

    from pyioso.output import save_png

    fig = Figure(figsize=(8, 3), dpi=110, layout="constrained")
    speed, loss = fig.subplots(1, 2)
    x = range(len(results))
    for offset, impl in ((-0.2, "brecq"), (0.2, "pyioso")):
        speed.bar([i + offset for i in x], [r[impl]["it_per_s"] for r in results], 0.4, label=impl)
        loss.bar([i + offset for i in x], [r[impl]["loss_after"] for r in results], 0.4, label=impl)
    for ax, title in ((speed, "iterations / s"), (loss, "reconstruction loss after")):
        ax.set_xticks(list(x), [r["block"] for r in results])
        ax.set(title=title)
        ax.legend()
    save_png(fig, str(OUT / "calib.png"))


if __name__ == "__main__":
    sys.exit(main())
