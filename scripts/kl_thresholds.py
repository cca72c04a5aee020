"""Why the KL (TensorRT entropy) observer collapses at 4-bit activations: its clipping point
per activation tensor beside MSE's, with and without the tensor's exact zeros.

    .venv/bin/python scripts/kl_thresholds.py [--net resnet18] [--weights PATH] [--abits 4]

For every tensor the engine quantizes after a ReLU: its share of exact zeros, its largest value,
the top of the range the MSE and the KL observers pick (what `pyioso calibrate --observer`
uses), and the KL threshold on the tensor's nonzero values alone. The histogram's first bin
holds every ReLU zero; where that is most of the mass, few kept bins already fit P, so the KL
search lands on a tiny threshold.
"""

import argparse

import torch

from pyioso.calib import workflow
from pyioso.data.datasets import FASHION
from pyioso.lowering.plan import lower
from pyioso.quant.observers import KLObserver
from pyioso.quant.layer import observe_coding
from pyioso.models import train


def _top(x: torch.Tensor, bits: int, observer: str) -> float:
    coding = observe_coding(x, bits, observer)
    return coding.scale * (2 ** bits - 1 - coding.zero_point)


def _after_relu(op) -> bool:
    if op.kind == "conv":
        return op.tail is not None and op.tail.activation == "relu"
    return op.kind == "add" and op.output is not op.node     # the add's ReLU fused into it


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", default="resnet18")
    p.add_argument("--weights", default="trained", help="state_dict file or 'trained' (default)")
    p.add_argument("--abits", type=int, default=4)
    p.add_argument("--images", type=int, default=256, help="calibration images (default: 256)")
    args = p.parse_args()
    torch.manual_seed(0)
    weights = train.resolve_weights(args.weights, args.net, FASHION, 32, True)
    run = workflow.Run(args.net, weights, images=args.images)
    low = lower(run.model(0).eval(), run.calibration_set(0), 4, args.abits)
    print(f"{'tensor':<24} {'zeros %':>8} {'max':>7} {'MSE top':>8} {'KL top':>8} {'KL top, nonzero':>16}")
    for op in filter(_after_relu, low.ops):
        x = low.floats[op.output]
        bits = low.act_bits(op.output)
        nonzero = x.flatten()[x.flatten() > 0]
        kl_nonzero = float(KLObserver()._threshold(nonzero, 2 ** bits))
        print(f"{op.name:<24} {100 * float((x == 0).float().mean()):8.1f} {float(x.max()):7.2f} "
              f"{_top(x, bits, 'mse'):8.3f} {_top(x, bits, 'kl'):8.3f} {kl_nonzero:16.3f}")


if __name__ == "__main__":
    main()
