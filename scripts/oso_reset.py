#!/usr/bin/env python
"""Which layer's OSO a calibration's top-1 owes (or loses): the finished fake-quant network on the
test images as calibrated, then with one layer's OSO (gamma^z, phi^z) reset to identity at a time,
each with the others kept, then one block's layers at once. Also how the logits' output coding
treats the top-1 decision: images whose top code is tied or saturated, and top-1 on the logits
before that coding.

    pyioso calibrate --net resnet18 --weights trained --wbits 4 --abits 4 --iters 5000 \
        --act-iters 1250 --seed 0 --out build/diag/w4a4-ioso-s0      # docs/i5000's W4A4 brecq+ioso seed 0
    .venv/bin/python scripts/oso_reset.py build/diag/w4a4-ioso-s0

    pyioso calibrate --net resnet18 --weights trained --wbits 2 --abits 2 --iters 5000 \
        --act-iters 1250 --seed 0 --no-oso-logits --out build/diag/w2a2-ioso-nologits-s0

A reset is not a calibration without that OSO (the layers after it adapted to it), except on the
classifier, after which nothing was calibrated: the toolbox study oso_logits calibrates that.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyioso.calib import workflow  # noqa: E402
from pyioso.data.datasets import labelled_images  # noqa: E402

BATCH = 500


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100 * float((logits.argmax(1) == labels).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a finished `pyioso calibrate --out` directory of an ioso calibration")
    p.add_argument("--images", type=int, help="test images (default: all)")
    args = p.parse_args()
    torch.set_num_threads(1)
    net, run, config = workflow.calibrated_network(args.run)
    x, labels = labelled_images(run.data, "test", run.size, args.images, seed=config.seed + 1)

    def codes(logits=workflow.logit_codes) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([logits(net, x[i:i + BATCH]) for i in range(0, len(x), BATCH)])

    coded = codes()
    out = net.coding(net.output_name)
    out.enabled = False
    before_coding = codes(lambda net, images: net(images))
    out.enabled = True
    _, hi = out.bounds()
    top = coded.max(1).values
    tied = (coded == top[:, None]).sum(1) > 1
    calibrated = top1(coded, labels)
    print(f"top-1 {calibrated:.2f} (logits before their output coding: {top1(before_coding, labels):.2f}); "
          f"top code tied on {int(tied.sum())} images ({int((tied & (coded.argmax(1) != labels)).sum())} of them "
          f"wrong), saturated at {hi} on {int((top == hi).sum())}")
    layers = [n for n in net.nodes if n.kind in ("conv", "fc") and net.op(n).oso]

    def reset(nodes) -> float:
        """Top-1 with these layers' OSO at identity, then their OSO put back."""
        ops = [net.op(n) for n in nodes]
        kept = [(op.oso_scale.detach().clone(), op.oso_offset.detach().clone()) for op in ops]
        with torch.no_grad():
            for op in ops:
                op.oso_scale.fill_(1.0)
                op.oso_offset.zero_()
            result = top1(codes(), labels)
            for op, (scale, offset) in zip(ops, kept):
                op.oso_scale.copy_(scale)
                op.oso_offset.copy_(offset)
        return result

    for node in layers:
        op = net.op(node)
        scale, offset = op.oso_scale, op.oso_offset
        top = reset([node])
        role = " (classifier)" if node.output == net.output_name else ""
        print(f"{node.name}{role}: OSO reset {top:.2f} ({top - calibrated:+.2f} pp); "
              f"gamma {float(scale.min()):.3f}..{float(scale.max()):.3f} ({int((scale > 1.5).sum())} of "
              f"{scale.numel()} over 1.5), phi {float(offset.min()):+.3f}..{float(offset.max()):+.3f}")
    blocks: dict[str, list] = {}
    for node in layers:
        blocks.setdefault(".".join(node.name.split(".")[:2]), []).append(node)
    for block, nodes in blocks.items():
        if len(nodes) > 1:      # a block's layers at once: their OSO may stand in for each other
            top = reset(nodes)
            print(f"{block} (its {len(nodes)} layers together): OSO reset {top:.2f} ({top - calibrated:+.2f} pp)")

if __name__ == "__main__":
    main()
