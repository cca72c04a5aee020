"""Why per-tensor weight scales beat per-channel ones for BRECQ at W2A4: each layer's rounding error
at nearest rounding, as its size and as its per-channel sum.

    .venv/bin/python scripts/grid_bias.py [--net resnet18] [--weights PATH] [--wbits 2] [--layers layer4]

For every middle conv whose name starts with one of --layers, under each weight granularity:
the relative squared error ||q - w||^2 / ||w||^2 and the mean over output channels of
|sum(q - w)| / sum|w|. The second is what a nonnegative (post-ReLU) input turns into a per-channel
output offset: the signed 2-bit grid (-2..1) has one positive level, so per-channel MSE scales,
which fit each channel's weights tightly, leave a one-sided sum.
"""

import argparse

from pyioso.calib import calibrate, workflow
from pyioso.data.datasets import FASHION
from pyioso.models import train


def errors(conv) -> tuple[float, float]:
    w = conv.weight.detach()
    err = conv.rounding().detach() - w
    size = float(err.pow(2).sum() / w.pow(2).sum())
    one_sided = float((err.flatten(1).sum(1).abs() / w.flatten(1).abs().sum(1)).mean())
    return size, one_sided


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", default="resnet18")
    p.add_argument("--weights", default="trained", help="state_dict file or 'trained' (default)")
    p.add_argument("--wbits", type=int, default=2)
    p.add_argument("--granularities", default="channel,tensor")
    p.add_argument("--layers", default="layer", help="comma-separated name prefixes (default: layer)")
    args = p.parse_args()
    run = workflow.Run(args.net, train.resolve_weights(args.weights, args.net, FASHION, 32, True), images=64)
    images = run.calibration_set(0)
    granularities = args.granularities.split(",")
    nets = {g: workflow.build_network(run, calibrate.Config.named("rtn", w_bits=args.wbits, weight_granularity=g),
                                      images) for g in granularities}
    first = nets[granularities[0]]
    print(f"{'layer':<24}" + "".join(f" {g + ' rel. MSE':>18} {g + ' |sum err|':>18}" for g in granularities))
    for node in first.nodes:
        conv = first.op(node)
        if node.kind != "conv" or conv.w_bits != args.wbits or not node.name.startswith(tuple(args.layers.split(","))):
            continue
        row = [errors(nets[g].op(node)) for g in granularities]
        print(f"{node.name:<24}" + "".join(f" {size:18.3f} {sided:18.3f}" for size, sided in row))


if __name__ == "__main__":
    main()
