#!/usr/bin/env python
"""Does a calibration stage that "ends above its start" really end worse? Each stage's reported
loss (the first 256 calibration images, as `pyioso calibrate` prints) next to the same loss over
all calibration images, before and after the stage, for every block of one calibration.

    .venv/bin/python scripts/stage_losses.py --method brecq --iters 1000 --wbits 2 --abits 4 \
        --check layer3.0,layer4.0,layer4.1,fc

--check adds, for those blocks' activation stage, each step's LSQ gradient next to central
differences of the loss, and the stage rerun from its start at other step learning rates.

The same network, checkpoint (pyioso train's, trained when missing), images and seed as a
bench-accuracy cell; the calibration itself is unchanged (the extra measurements draw no random
numbers), so its top-1 is the cell's.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyioso.calib import calibrate, workflow  # noqa: E402
from pyioso.data.datasets import FASHION  # noqa: E402
from pyioso.models import train  # noqa: E402
from pyioso.quant import rounding  # noqa: E402

RELATIVE = (0.001, 0.005, 0.02)     # step changes of the central differences
OTHER_RATES = (1e-4, 4e-5, 1e-5)    # step learning rates tried besides the method's


class MeasuringCalibrator(calibrate.Calibrator):
    """Measures every reported loss twice: over the reported images and over all of them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.measured: list[tuple[str, str, float, float]] = []
        self._where = ("", "")
        self.check: set[str] = set()
        self.slopes: list[tuple] = []
        self.rates: list[tuple[str, float, float]] = []

    def _reconstruct(self, si, stage, i, seg, fp, q, fp_out):
        self._where = (stage.name, seg.name)
        check = stage.acts and seg.name in self.check
        if check:
            self.slopes += self._slopes("start", stage, seg, fp, q, fp_out)
            self._other_rates(si, stage, i, seg, fp, q, fp_out)
        super()._reconstruct(si, stage, i, seg, fp, q, fp_out)
        if check:
            self.slopes += self._slopes("end", stage, seg, fp, q, fp_out)
            self.rates.append((seg.name, self.config.act_lr, self.measured[-1][3]))

    def _other_rates(self, si, stage, i, seg, fp, q, fp_out):
        """The same stage (same mini-batches) at the other step learning rates, each from the
        same start and undone afterwards: the loss over all images it ends at."""
        steps = self._learned(stage, seg)[3]
        start, config, recorded = [s.detach().clone() for s in steps], self.config, len(self.measured)
        for lr in OTHER_RATES:
            self.config = dataclasses.replace(config, act_lr=lr)
            super()._reconstruct(si, stage, i, seg, fp, q, fp_out)
            self.rates.append((seg.name, lr, self.measured[-1][3]))
            for s, value in zip(steps, start):
                s.data.copy_(value)
            self.history.segments.pop()
        self.config = config
        del self.measured[recorded:]

    def _slopes(self, when, stage, seg, fp, q, fp_out, chunk=128):
        """Each activation step's straight-through (LSQ) gradient of the loss over all images,
        next to the loss's actual slope (central differences at +-RELATIVE of the step)."""
        steps = self._learned(stage, seg)[3]
        nodes, q, _ = self._prefix(seg, stage, q, fp)
        targets = list(seg.outputs)
        loss = lambda: calibrate.Calibrator.segment_loss(self, nodes, targets, q, fp_out, stage.p, None)  # noqa: E731
        n = self.images.shape[0]
        for s in steps:
            s.requires_grad_(True)
            s.grad = None
        self.net.train()
        for start in range(0, n, chunk):
            part = {k: v[start:start + chunk] for k, v in q.items()}
            result = self.net.run(part, nodes)
            size = next(iter(part.values())).shape[0]
            rec = sum(calibrate.lp_loss(result[k], fp_out[k][start:start + chunk], stage.p) for k in targets)
            (rec * size / n).backward()
        self.net.eval()
        rows = []
        for s in steps:
            value, slopes = float(s.detach()), []
            for rel in RELATIVE:
                s.data.fill_(value * (1 + rel))
                up = loss()
                s.data.fill_(value * (1 - rel))
                down = loss()
                slopes.append((up - down) / (2 * rel * value))
            s.data.fill_(value)
            rows.append((seg.name, when, value, float(s.grad), *slopes))
            s.requires_grad_(False)
            s.grad = None
        return rows

    def segment_loss(self, nodes, outputs, q, fp_out, p, limit=256):
        reported = super().segment_loss(nodes, outputs, q, fp_out, p, limit)
        every = super().segment_loss(nodes, outputs, q, fp_out, p, None)
        self.measured.append((*self._where, reported, every))
        return reported


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="brecq")
    p.add_argument("--wbits", type=int, default=2)
    p.add_argument("--abits", type=int, default=4)
    p.add_argument("--iters", type=int, default=1000, help="weight stage; activation stage a quarter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a bench cell)")
    p.add_argument("--check", default="", help="blocks whose activation steps get the gradient check "
                   "(comma separated): LSQ's gradient against the loss's slope, at the stage's start and end")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rounding.build_kernels()
    run = workflow.Run("resnet18", train.resolve_weights(train.TRAINED, "resnet18", FASHION, 32))
    config = calibrate.Config.named(args.method, w_bits=args.wbits, a_bits=args.abits, iters=args.iters,
                                    act_iters=args.iters // 4, seed=args.seed)
    images = run.calibration_set(config.seed)
    net = workflow.build_network(run, config, images)
    calibrator = MeasuringCalibrator(net, images, config, progress=True)
    calibrator.check = set(filter(None, args.check.split(",")))
    calibrator.run()
    by_stage: dict[tuple[str, str], list] = {}
    for stage, seg, reported, every in calibrator.measured:
        by_stage.setdefault((stage, seg), []).append((reported, every))
    print(f"| stage | block | first 256: before | after | all {images.shape[0]}: before | after | ends above start on |")
    print("|---|---|---|---|---|---|---|")
    for (stage, seg), pairs in by_stage.items():
        (rb, eb), (ra, ea) = pairs[0], pairs[-1]
        above = [name for name, b, a in (("256", rb, ra), ("all", eb, ea)) if a > b]
        print(f"| {stage} | {seg} | {rb:.5g} | {ra:.5g} | {eb:.5g} | {ea:.5g} | {', '.join(above) or '-'} |")
    if calibrator.slopes:
        slopes = " | ".join(f"slope at +-{100 * rel:g}%" for rel in RELATIVE)
        print(f"\n| block | when | step | LSQ gradient | {slopes} |")
        print("|---|---|---|---|" + "---|" * len(RELATIVE))
        for seg, when, value, grad, *slope in calibrator.slopes:
            print(f"| {seg} | {when} | {value:.5g} | {grad:+.5g} | " + " | ".join(f"{v:+.5g}" for v in slope) + " |")
        pairs = [(grad, slope) for _, _, _, grad, *slope in calibrator.slopes]
        steady = sum(len({v > 0 for v in slope}) == 1 for _, slope in pairs)
        agree = sum((grad > 0) == (slope[-1] > 0) for grad, slope in pairs)
        print(f"\nThe slopes agree in sign at all {len(RELATIVE)} step changes for {steady} of {len(pairs)}; "
              f"LSQ's gradient has the sign of the +-{100 * RELATIVE[-1]:g}% slope for {agree} of {len(pairs)}.")
    if calibrator.rates:
        print("\n| block | step learning rate | loss over all images after the stage |")
        print("|---|---|---|")
        for seg, lr, loss in sorted(calibrator.rates, key=lambda r: (r[0], -r[1])):
            print(f"| {seg} | {lr:g} | {loss:.5g} |")


if __name__ == "__main__":
    main()

