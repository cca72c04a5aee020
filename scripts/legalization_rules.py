#!/usr/bin/env python
"""ISG legalization by the paper's rule (App. D.6: the most probable group) against legalizing
each channel to the group nearest its learned scale, on the test suite's tiny ResNet (W2A4
ioso+brecq, 200/50 iterations, 3 seeds): the loss jump at legalization and the final losses.

    .venv/bin/python scripts/legalization_rules.py

Measured for issue 23 (docs/CALIBRATION.md, Methods): the nearest-scale rule removes the jump
but ends with higher final losses, so the paper's rule stays.
"""

import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / d) for d in ("", "tests")]

from test_calibrate import _model  # noqa: E402  (the tests' tiny ResNet)

from pyioso.calib import calibrate, isg, qnet  # noqa: E402
from pyioso.data.datasets import calibration_images  # noqa: E402

PAPER = isg.InputScale.legalize


def nearest(self, granularity: int, permutable: bool) -> None:
    """The paper's procedure on probabilities peaked at each channel's nearest group scale."""
    d = (self.group_scales[None, :] - self().detach()[:, None]) ** 2
    self.probabilities = lambda: torch.softmax(-d / d.mean().clamp(min=1e-12), dim=1)
    try:
        PAPER(self, granularity, permutable)
    finally:
        del self.probabilities


def main() -> None:
    torch.set_num_threads(2)
    images = calibration_images(256, 16, 0)
    for name, rule in (("paper", PAPER), ("nearest", nearest)):
        isg.InputScale.legalize = rule
        for seed in range(3):
            config = calibrate.Config.named("ioso", "brecq", w_bits=2, a_bits=4, iters=200, act_iters=50,
                                            batch=32, seed=seed)
            net = qnet.build(_model(), images[:64], 2, 4)
            history = calibrate.Calibrator(net, images, config, None, fingerprint="x", progress=False).run()
            weights = [e for e in history.segments if e["stage"] == "weights"]
            acts = [e for e in history.segments if e["stage"] == "activations"]
            jumps = [round(e["legalize"]["loss_after"] / e["legalize"]["loss_before"], 3)
                     for e in weights if "legalize" in e]
            print(f"{name:8s} seed {seed}: weight stages final {sum(e['loss_after'] for e in weights):.4f}, "
                  f"activation stages final {sum(e['loss_after'] for e in acts):.4f}, "
                  f"legalization loss ratio per block {jumps}", flush=True)
    isg.InputScale.legalize = PAPER


if __name__ == "__main__":
    main()
