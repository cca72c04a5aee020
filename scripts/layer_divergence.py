"""Where a calibration's integer network leaves its fake-quant one, layer by layer.

    .venv/bin/python scripts/layer_divergence.py RUN_DIR [--images 500]

For every integer op of the exported network: the share of output codes that differ from the
fake-quant codes when the op is fed the fake-quant codes of its inputs (isolated: that op's own
rounding) and when the integer network runs on its own outputs (propagated). For an op whose
isolated codes differ, the worst output channel (in the module's own order) with its
alpha'/s_out and beta'/s_out, the terms of ARCHITECTURE §3's error bound, and how many of the op's
differing codes had a fake-quant value exactly on a rounding tie (x / s + z = k + 1/2 in float32),
where the fixed-point requantization may round the other way, and how far from a tie the farthest
one was.
"""

import argparse
from pathlib import Path

import torch

from pyioso.calib import export, workflow
from pyioso.calib.qnet import QConv
from pyioso.quant.layer import encode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="calibration directory (pyioso calibrate --out)")
    p.add_argument("--images", type=int, default=500, help="test images (default: 500)")
    args = p.parse_args()
    net, run, config = workflow.calibrated_network(args.run)
    int_net, perms = export.integer_network(net, config.granularity)
    x, _ = workflow.labelled_images(run.data, "test", run.size, args.images, seed=config.seed + 1)
    before_rounding, hooks = {}, []
    for node in net.nodes:
        act = getattr(net.op(node), "act", None)
        if act is not None:
            hooks.append(act.register_forward_pre_hook(
                lambda m, a, name=node.output: before_rounding.__setitem__(name, a[0] / m.scale + m.zero_point)))
    with torch.no_grad():
        fake = net.run({net.input_name: net.quantize_input(x)}, net.nodes)
    for hook in hooks:
        hook.remove()

    def ties(name: str, differ: torch.Tensor) -> str:
        value = before_rounding[name].permute(0, 2, 3, 1) if before_rounding[name].dim() == 4 else \
            before_rounding[name][:, None, None, :]
        value = (value[..., perms[name]] if name in perms else value).reshape(differ.shape)[differ]
        off_tie = (value - value.floor() - 0.5).abs()
        return (f"{int((off_tie == 0).sum())} of {int(differ.sum())} differing codes on exact ties, "
                f"all within {float(off_tie.max()):.2g} of one")

    def fake_codes(name: str) -> torch.Tensor:
        value = fake[name] if fake[name].dim() == 4 else fake[name][:, :, None, None]
        codes = encode(value, net.coding(name).coding())
        return codes[..., perms[name]] if name in perms else codes

    nodes = {node.name: node for node in net.nodes}
    own = {int_net.input_name: int_net.quantize_input(x)}
    for step in int_net.steps:
        isolated = step.run(*(fake_codes(name) for name in step.inputs))
        own[step.output] = step.run(*(own[name] for name in step.inputs))
        reference = fake_codes(step.output).reshape(isolated.shape)
        per_channel = (isolated != reference).double().mean((0, 1, 2))
        line = (f"{step.name:28s} isolated {100 * per_channel.mean():7.3f}%  propagated "
                f"{100 * (own[step.output] != reference).double().mean():7.3f}%")
        module = net.op(nodes[step.name])
        if per_channel.max() > 0 and isinstance(module, QConv):
            worst = int(per_channel.argmax())
            channel = int(perms[step.output][worst]) if step.output in perms else worst
            fc = export.float_conv(module, net.coding(step.inputs[0]).coding(), module.act.coding(),
                                   net.isg_shift, export.isg_codes(net, nodes[step.name]))
            line += (f"  worst channel {channel}: {100 * per_channel[worst]:.1f}% of its codes, "
                     f"alpha'/s_out {(fc.alpha_prime() / fc.out_scale)[channel]:.4g}, "
                     f"beta'/s_out {(fc.beta_prime() / fc.out_scale)[channel]:.6f}, F {step.op.requant.shift}; "
                     f"{ties(step.output, isolated != reference)}")
        print(line)


if __name__ == "__main__":
    main()
