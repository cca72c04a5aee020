#!/usr/bin/env python
"""The reference half of `make bench-parity`: BRECQ's or QDrop's own code calibrating pyioso's whole
resnet18, end to end, on the same checkpoint, calibration images, bits and budget as
`pyioso calibrate --method brecq|qdrop`, then its top-1 on the Fashion-MNIST test split.

Each reference runs as its main_imagenet.py does (copies made by scripts/fetch_reference.sh, never
committed; the drivers below replace only main_imagenet.py's data loading, .cuda() calls and
argument parsing):
- brecq: per-channel MSE weight grids, 8-bit stem and head, weight stage (AdaRound, block
  reconstruction), then the activation stage (LSQ steps, lr 4e-4, L_2.4) on MSE-initialized steps;
- qdrop: BN folded, MSE observers (256 images for activations), one joint stage per block (AdaRound
  and LSQ steps at lr 4e-5, drop probability 0.5), the head's input 8-bit.

Example: .venv/bin/python scripts/reference_ptq.py brecq --wbits 2 --abits 4 --iters 200 --act-iters 50
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from brecq_ref import NUM_CLASSES, brecq_resnet18, import_brecq, pyioso_resnet18_state, use_pyioso_grid
from golden.errors import PyiosoError
from pyioso import parallel
from pyioso.data.datasets import FASHION, calibration_images, labelled_images


def _seed_all(seed: int) -> None:
    """As both references' set_seed: Python, NumPy and torch generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def top1(model: torch.nn.Module, size: int, images: int | None, batch: int = 250) -> float:
    x, labels = labelled_images(FASHION, "test", size, images)
    model.eval()
    correct = sum(int((model(x[i:i + batch]).argmax(1) == labels[i:i + batch]).sum())
                  for i in range(0, len(x), batch))
    return 100.0 * correct / len(x)


def run_brecq(args: argparse.Namespace, cali: torch.Tensor) -> dict:
    quant, resnet = import_brecq(args.ref)
    from quant.block_recon import block_reconstruction
    from quant.layer_recon import layer_reconstruction

    wq = {"n_bits": args.wbits, "channel_wise": True, "scale_method": "mse"}
    aq = {"n_bits": args.abits, "channel_wise": False, "scale_method": "mse", "leaf_param": True}
    qnn = quant.QuantModel(model=brecq_resnet18(resnet, args.seed, args.checkpoint),
                           weight_quant_params=wq, act_quant_params=aq)
    qnn.eval()
    qnn.set_first_last_layer_to_8bit()
    qnn.set_quant_state(True, False)
    with torch.no_grad():
        qnn(cali[:64])
    if args.grid == "pyioso":
        use_pyioso_grid(qnn, args.wbits)

    def recon_model(module: torch.nn.Module, **kwargs) -> None:     # main_imagenet.py's recon_model
        for child in module.children():
            if isinstance(child, quant.QuantModule) and not child.ignore_reconstruction:
                layer_reconstruction(qnn, child, **kwargs)
            elif isinstance(child, quant.BaseQuantBlock) and not child.ignore_reconstruction:
                block_reconstruction(qnn, child, **kwargs)
            elif not isinstance(child, (quant.QuantModule, quant.BaseQuantBlock)):
                recon_model(child, **kwargs)

    recon_model(qnn, cali_data=cali, iters=args.iters, weight=0.01, asym=True, b_range=(20, 2), warmup=0.2,
                act_quant=False, opt_mode="mse")
    qnn.set_quant_state(weight_quant=True, act_quant=False)
    weight_only = top1(qnn, args.size, args.eval_images)
    qnn.set_quant_state(True, True)
    with torch.no_grad():
        qnn(cali[:64])
    qnn.disable_network_output_quantization()
    recon_model(qnn, cali_data=cali, iters=args.act_iters, act_quant=True, opt_mode="mse", lr=4e-4, p=2.4)
    qnn.set_quant_state(weight_quant=True, act_quant=True)
    return {"weight_only": weight_only, "top1": top1(qnn, args.size, args.eval_images)}


def import_qdrop(root: Path):
    if not (root / "qdrop" / "solver" / "recon.py").is_file():
        raise PyiosoError(f"no QDrop copy at {root}: make one with `scripts/fetch_reference.sh qdrop {root}`")
    sys.path[:0] = [str(root.resolve()), str((root / "qdrop" / "solver").resolve())]
    import fold_bn
    import main_imagenet
    import qdrop.model
    import recon
    from qdrop.quantization import state
    return main_imagenet, fold_bn, qdrop.model, recon, state


def run_qdrop(args: argparse.Namespace, cali: torch.Tensor) -> dict:
    main_imagenet, fold_bn, models, recon, state = import_qdrop(args.ref)
    from qdrop.quantization.observer import ObserverBase
    from qdrop.quantization.quantized_module import QuantizedBlock, QuantizedLayer

    # exp/w2a4/r18/config.yaml, with the bits and budget of this run
    a_q = SimpleNamespace(quantizer="LSQFakeQuantize", observer="MSEObserver", bit=args.abits, symmetric=False,
                          ch_axis=-1)
    w_q = SimpleNamespace(quantizer="AdaRoundFakeQuantize", observer="MSEObserver", bit=args.wbits,
                          symmetric=False, ch_axis=0)
    rc = SimpleNamespace(batch_size=32, scale_lr=4.0e-5, warm_up=0.2, weight=0.01, iters=args.iters,
                         b_range=[20, 2], keep_gpu=True, round_mode="learned_hard_sigmoid", drop_prob=0.5)
    model = models.resnet18(num_classes=NUM_CLASSES)
    model.load_state_dict(pyioso_resnet18_state(args.seed, args.checkpoint), strict=True)  # same names
    model.eval()
    fold_bn.search_fold_and_remove_bn(model)
    model = main_imagenet.quantize_model(model, SimpleNamespace(a_qconfig=a_q, w_qconfig=w_q))
    model.eval()
    fp_model = copy.deepcopy(model)
    state.disable_all(fp_model)
    for name, module in model.named_modules():
        if isinstance(module, ObserverBase):
            module.set_name(name)
    with torch.no_grad():
        state.enable_calibration_woquantization(model, quantizer_type="act_fake_quant")
        model(cali[:256])
        state.enable_calibration_woquantization(model, quantizer_type="weight_fake_quant")
        model(cali[:2])
    state.enable_quantization(model)
    if args.grid == "pyioso":
        _qdrop_on_pyioso_grid(model, args.wbits)

    def recon_model(module, fp_module) -> None:      # main_imagenet.py's recon_model
        for name, child in module.named_children():
            if isinstance(child, (QuantizedLayer, QuantizedBlock)):
                recon.reconstruction(model, fp_model, child, getattr(fp_module, name), cali, rc)
            else:
                recon_model(child, getattr(fp_module, name))

    recon_model(model, fp_model)
    state.enable_quantization(model)
    return {"top1": top1(model, args.size, args.eval_images)}


@torch.no_grad()
def _qdrop_on_pyioso_grid(model: torch.nn.Module, bits: int) -> None:
    """As brecq_ref.use_pyioso_grid, for QDrop's weight quantizers (after its observers ran; the
    weights are BN-folded, as pyioso's are when it picks its scales)."""
    from pyioso.quant.layer import qparams

    for m in model.modules():
        q = getattr(m, "weight_fake_quant", None)
        if q is None or q.bit != bits:          # the 8-bit stem and head keep QDrop's grid
            continue
        scale, _ = qparams(m.weight.detach(), bits, signed=True, ch_axis=0)
        q.scale.copy_(scale.reshape(q.scale.shape).to(q.scale.dtype))
        q.zero_point.copy_(torch.full_like(q.zero_point, 2 ** (bits - 1)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("method", choices=("brecq", "qdrop"))
    p.add_argument("--ref", type=Path, help="the reference copy (default: build/METHOD)")
    p.add_argument("--wbits", type=int, default=2)
    p.add_argument("--abits", type=int, default=4)
    p.add_argument("--iters", type=int, default=200, help="weight stage (QDrop: its joint stage) per block")
    p.add_argument("--act-iters", type=int, default=50, help="BRECQ's activation stage per block")
    p.add_argument("--grid", choices=("own", "pyioso"), default="own",
                   help="weight grid: the reference's own (asymmetric, MSE range) or pyioso's symmetric one")
    p.add_argument("--images", type=int, default=1024, help="calibration images (Fashion-MNIST train)")
    p.add_argument("--eval-images", type=int, help="test images (default: all 10k)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="the calibration draw and the references' seed")
    p.add_argument("--checkpoint", type=Path, help="resnet18 state_dict (pyioso train's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the result here (atomically)")
    p.add_argument("--with-parent", action="store_true",
                   help="end when the process that started this one ends (make bench-parity's runs)")
    args = p.parse_args(argv)
    if args.with_parent:
        parallel.die_with_parent(os.getppid())
    args.ref = args.ref or Path("build") / args.method
    torch.set_num_threads(args.threads)
    try:
        _seed_all(args.seed)
        cali = calibration_images(args.images, args.size, args.seed)
        began = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            result = (run_brecq if args.method == "brecq" else run_qdrop)(args, cali)
    except PyiosoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result.update(impl=args.method, commit=(args.ref / "REFERENCE_COMMIT").read_text().split()[0],
                  wbits=args.wbits, abits=args.abits, iters=args.iters,
                  act_iters=args.act_iters if args.method == "brecq" else None, grid=args.grid, seed=args.seed,
                  images=args.images, size=args.size, seconds=round(time.perf_counter() - began, 1),
                  threads=args.threads, checkpoint=str(args.checkpoint) if args.checkpoint else None)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(f".{args.json.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, args.json)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
