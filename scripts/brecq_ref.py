#!/usr/bin/env python
"""The reference half of `make bench-calib`: BRECQ's own block reconstruction, timed on this CPU.

Runs the unmodified-in-logic BRECQ code (a local copy made by scripts/fetch_reference.sh brecq, never
committed) the way its main_imagenet.py does for the weight stage, on one block of pyioso's
resnet18 with Fashion-MNIST train images, and reports iterations per second of the optimization
loop alone, peak memory, and the reconstruction loss after hard rounding, measured the way pyioso
measures its own calibrator so the two numbers can be compared side by side.

Example: .venv/bin/python scripts/brecq_ref.py --brecq build/brecq --iters 200 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from golden.errors import PyiosoError
from pyioso.data.datasets import calibration_images
from pyioso.models.tv import build_model

NUM_CLASSES = 10  # Fashion-MNIST
ABITS = 4  # main_imagenet.py's --n_bits_a default; activations stay float in the weight stage


def _rss_peak_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_rss_peak() -> bool:
    """Restart the kernel's RSS high-water mark (Linux >= 4.0), to see the peak of one phase."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status")


def import_brecq(root: Path):
    """Put the BRECQ copy first on sys.path and return its quant package and resnet module."""
    if not (root / "quant" / "block_recon.py").is_file():
        raise PyiosoError(f"no BRECQ copy at {root}: make one with `scripts/fetch_reference.sh brecq {root}`")
    if "device = 'cuda'" in (root / "quant" / "block_recon.py").read_text():
        raise PyiosoError(f"{root} is a BRECQ copy without the CPU adaptation: remove it and "
                          f"rerun `scripts/fetch_reference.sh brecq {root}`")
    sys.path.insert(0, str(root.resolve()))
    with contextlib.redirect_stdout(sys.stderr):  # linklink prints a notice at import
        import models.resnet
        import quant
        import quant.block_recon
    return quant, models.resnet


def pyioso_resnet18_state(seed: int, checkpoint: Path | None) -> dict:
    """The state_dict of the torchvision resnet18 pyioso calibrates: the checkpoint's, or seeded
    untrained weights."""
    tv_model = build_model("resnet18", num_classes=NUM_CLASSES, seed=seed)
    if checkpoint is not None:
        if not checkpoint.is_file():
            raise PyiosoError(f"checkpoint {checkpoint} does not exist: pass a resnet18 state_dict file")
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as err:  # torch.load raises anything from KeyError to UnpicklingError
            raise PyiosoError(f"{checkpoint} is not a torch.save file ({type(err).__name__}: {err}): "
                              "pass a resnet18 state_dict saved with torch.save") from err
        try:
            tv_model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as err:
            raise PyiosoError(f"{checkpoint} is not a {NUM_CLASSES}-class torchvision resnet18 state_dict "
                              f"({str(err).splitlines()[0]}): pass model.state_dict() of such a model") from err
    return tv_model.state_dict()


def brecq_resnet18(resnet, seed: int, checkpoint: Path | None) -> torch.nn.Module:
    """pyioso's resnet18 weights in BRECQ's own ResNet class.

    BRECQ's QuantModel finds blocks by exact type in its `specials` dict, and its QuantBasicBlock
    reads `relu1`/`relu2`, which torchvision's BasicBlock (one shared `relu`) lacks; so registering
    torchvision's class would not work. BRECQ's resnet18 has the same parameter and buffer names
    and the same forward (checked: strict load, identical outputs), so the weights are copied over.
    """
    model = resnet.resnet18(num_classes=NUM_CLASSES)
    model.load_state_dict(pyioso_resnet18_state(seed, checkpoint), strict=True)
    return model.eval()


@torch.no_grad()
def use_pyioso_grid(model, bits: int) -> None:
    """Put the model's w-bit weights on pyioso's grid: symmetric per channel, codes -2^(b-1) ..
    2^(b-1) - 1 with pyioso's MSE scales. BRECQ's grid 0 .. 2^b - 1 with zero point 2^(b-1) is
    that grid exactly, so both sides then solve the same problem from the same start (the
    blocks before the reconstructed one, rounded to nearest, give both the same inputs)."""
    from pyioso.quant.layer import qparams

    for m in model.modules():
        q = getattr(m, "weight_quantizer", None)
        if q is None or q.n_bits != bits:       # first/last layer: 8-bit, left as BRECQ sets it
            continue
        scale, _ = qparams(m.weight.detach(), bits, signed=True, ch_axis=0)
        q.delta = scale.reshape(-1, 1, 1, 1).to(m.weight.dtype)
        q.zero_point = torch.full_like(q.delta, 2 ** (bits - 1))


@torch.no_grad()
def recon_loss(lp_loss, block, inps: torch.Tensor, outs: torch.Tensor, batch: int) -> float:
    """BRECQ's lp_loss (p=2: squared error summed over channels, mean over the rest) over all of
    inps at once, computed in chunks: chunks are weighted by image count, which is exact."""
    total = 0.0
    for i in range(0, len(inps), batch):
        total += float(lp_loss(block(inps[i:i + batch]), outs[i:i + batch], p=2.0)) * len(inps[i:i + batch])
    return total / len(inps)


def run(args: argparse.Namespace) -> dict:
    quant, resnet = import_brecq(args.brecq)
    threads = args.threads or len(os.sched_getaffinity(0))
    # Setup runs on one thread: BRECQ's per-channel MSE scale search (the init forward) issues
    # ~400k tiny ops, for which OpenMP hand-offs cost more than they save and stall for
    # milliseconds each when another process holds a core (measured: 30 s on 1 thread, 280 s on 2
    # on a shared 2-core machine). Same results; only the measured phases use --threads.
    torch.set_num_threads(1)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    if args.images < max(args.batch, 64):
        raise PyiosoError(f"--images must be at least --batch and 64 (the init forward), got {args.images}")
    cali_data = calibration_images(args.images, args.size, args.seed)

    # As main_imagenet.py: per-channel MSE weight scales, 8-bit first/last layer, init on 64 images.
    wq_params = {"n_bits": args.wbits, "channel_wise": True, "scale_method": "mse"}
    aq_params = {"n_bits": ABITS, "channel_wise": False, "scale_method": "mse", "leaf_param": False}
    with contextlib.redirect_stdout(sys.stderr):
        qnn = quant.QuantModel(model=brecq_resnet18(resnet, args.seed, args.checkpoint),
                               weight_quant_params=wq_params, act_quant_params=aq_params)
    blocks = {name.removeprefix("model."): m for name, m in qnn.named_modules()
              if isinstance(m, quant.BaseQuantBlock)}
    if args.block not in blocks:
        raise PyiosoError(f"no block {args.block!r} in resnet18: use one of {', '.join(blocks)}")
    block = blocks[args.block]
    with contextlib.redirect_stdout(sys.stderr):
        qnn.eval()
        qnn.set_first_last_layer_to_8bit()
        qnn.set_quant_state(True, False)
        _ = qnn(cali_data[:64])
    if args.grid == "pyioso":
        use_pyioso_grid(qnn, args.wbits)

    # Time the optimization loop alone: block_reconstruction calls the module-level
    # save_inp_oup_data once, right before its loop (opt_mode 'mse' caches no gradients), so the
    # loop runs from that call's return to block_reconstruction's return.
    br = quant.block_recon
    nearest = {m: m.weight_quantizer for m in block.modules() if isinstance(m, quant.QuantModule)}
    marks: dict[str, float] = {}
    cache: dict[str, torch.Tensor] = {}
    original = br.save_inp_oup_data

    def timed_save_inp_oup_data(*a, **kw):
        marks["cache0"] = time.perf_counter()
        inps, outs = original(*a, **kw)
        marks["cache1"] = time.perf_counter()
        cache.update(inps=inps, outs=outs)
        # Loss before optimization: BRECQ's nearest-rounding quantizers, swapped in for the
        # evaluation only (block_reconstruction has already installed AdaRound ones).
        adaround = {m: m.weight_quantizer for m in nearest}
        for m, q in nearest.items():
            m.weight_quantizer = q
        marks["loss_before"] = recon_loss(br.lp_loss, block, inps, outs, args.batch)
        for m, q in adaround.items():
            m.weight_quantizer = q
        marks["loop0"] = time.perf_counter()
        return inps, outs

    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)  # the mini-batch draws depend on the seed alone
    rss_before = _rss_peak_mb()
    reset = _reset_rss_peak()
    br.save_inp_oup_data = timed_save_inp_oup_data
    try:
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            br.block_reconstruction(qnn, block, cali_data=cali_data, batch_size=args.batch, iters=args.iters,
                                    weight=0.01, asym=True, b_range=(20, 2), warmup=0.2, act_quant=False,
                                    opt_mode="mse")
        end = time.perf_counter()
    finally:
        br.save_inp_oup_data = original
    recon_peak = _vm_hwm_mb() if reset else None

    block.set_quant_state(True, False)  # hard-rounded weights (soft_targets off), float activations
    loss_after = recon_loss(br.lp_loss, block, cache["inps"], cache["outs"], args.batch)
    loop_s = end - marks["loop0"]
    return {
        "impl": "brecq",
        "brecq_commit": (args.brecq / "REFERENCE_COMMIT").read_text().split()[0]
        if (args.brecq / "REFERENCE_COMMIT").is_file() else None,
        "net": "resnet18", "block": args.block, "size": args.size, "wbits": args.wbits, "grid": args.grid,
        "iters": args.iters, "batch": args.batch, "images": args.images, "cached_images": len(cache["inps"]),
        "seed": args.seed, "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "threads": threads, "torch": torch.__version__,
        "loop_s": loop_s, "it_per_s": args.iters / loop_s,
        "cache_s": marks["cache1"] - marks["cache0"], "setup_s": marks["cache0"] - start,
        "recon_s": end - start - (marks["loop0"] - marks["cache1"]),
        "peak_rss_mb": max(rss_before, _rss_peak_mb(), recon_peak or 0.0), "recon_peak_rss_mb": recon_peak,
        "loss_before": marks["loss_before"], "loss_after": loss_after,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--brecq", type=Path, default=Path("build/brecq"), help="copy made by scripts/fetch_reference.sh brecq")
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--images", type=int, default=1024, help="calibration images (Fashion-MNIST train)")
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--block", default="layer1.0", help="resnet18 block to reconstruct, e.g. layer3.0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wbits", type=int, default=4)
    p.add_argument("--grid", choices=("brecq", "pyioso"), default="brecq",
                   help="weight grid: BRECQ's own (asymmetric, MSE range) or pyioso's symmetric one")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all usable cores)")
    p.add_argument("--checkpoint", type=Path, help="resnet18 state_dict (default: seeded untrained weights)")
    p.add_argument("--json", type=Path, help="write the results here (atomically)")
    args = p.parse_args(argv)
    try:
        if args.iters < 1 or args.batch < 1 or args.size < 1 or args.threads < 0 or not 2 <= args.wbits <= 8:
            raise PyiosoError("--iters, --batch and --size must be positive, --threads >= 0, --wbits in 2..8")
        result = run(args)
    except PyiosoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(f".{args.json.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, args.json)
    r = result
    print(f"brecq {r['net']} {r['block']} {r['size']}px W{r['wbits']}: {r['iters']} it in {r['loop_s']:.2f} s "
          f"= {r['it_per_s']:.2f} it/s (caching {r['cache_s']:.2f} s), loss {r['loss_before']:.4f} -> "
          f"{r['loss_after']:.4f}, peak RSS {r['peak_rss_mb']:.0f} MB, {r['threads']} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
