#!/usr/bin/env python
"""Where one block's reconstruction loop spends its time: the torch profiler over pyioso's BRECQ
weight stage on one resnet18 block (seeded weights, 32 px Fashion-MNIST, batch 32), the same
setting as `make bench-calib`.

    .venv/bin/python scripts/profile_block.py --block layer1.0 --iters 150 --threads 1

With --stage activations it profiles the activation stage instead (A4, after a 50-iteration
weight stage that is not profiled); with --method qdrop, QDrop's joint stage (W4A4, drop 0.5).
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyioso.calib import calibrate, qnet  # noqa: E402
from pyioso.data.datasets import calibration_images  # noqa: E402
from pyioso.models.weights import RANDOM, load_model  # noqa: E402
from pyioso.quant import rounding  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--block", default="layer1.0")
    p.add_argument("--iters", type=int, default=150)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--stage", choices=("weights", "activations"), default="weights", help="of brecq")
    p.add_argument("--method", choices=("brecq", "qdrop"), default="brecq")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rounding.build_kernels()
    images = calibration_images(1024, 32, 0)
    net = qnet.build(load_model("resnet18", RANDOM, 10, 0), images[:64], 4, 8)
    qdrop = args.method == "qdrop"
    acts = args.stage == "activations" and not qdrop
    stage = "joint" if qdrop else args.stage
    config = calibrate.Config.named(args.method, w_bits=4, a_bits=4 if acts or qdrop else None,
                                    iters=50 if acts else args.iters, act_iters=args.iters, batch=32, seed=0)
    calibrator = calibrate.Calibrator(net, images, config, progress=False, only={args.block}, loss_images=None)
    reconstruct = calibrator._reconstruct

    def profiled(si, stage_, *a, **k):
        if stage_.name != stage:
            return reconstruct(si, stage_, *a, **k)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            reconstruct(si, stage_, *a, **k)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=22))
    calibrator._reconstruct = profiled
    entry = next(e for e in calibrator.run().segments if e["segment"] == args.block and e["stage"] == stage)
    print(f"{args.block}: {args.iters / entry['seconds']:.1f} it/s in the loop; the table's loss "
          "evaluations (loss before/after over all images) are outside it")


if __name__ == "__main__":
    main()
