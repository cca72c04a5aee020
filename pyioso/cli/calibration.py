"""`pyioso train`, `calibrate`, `export` and `eval` (registered in pyioso.cli.main)."""

from __future__ import annotations

import argparse
from pathlib import Path

from golden.spec import GRANULARITY, ISG_SHIFT
from pyioso import output
from pyioso.calib import calibrate, finetune, workflow
from pyioso.cli.types import nonnegative_int, positive_int
from pyioso.data.datasets import FASHION
from pyioso.models import train
from pyioso.quant.granularity import GRANULARITIES
from pyioso.quant.levels import LEVELS
from pyioso.quant.observers import OBSERVERS

_RAW = argparse.RawDescriptionHelpFormatter


def _bits(text: str) -> int:
    return int(text)


def _config(args: argparse.Namespace) -> calibrate.Config:
    w_bits, a_bits = workflow.calibration_bits(args.wbits, args.abits, "--")
    iters = dict(workflow.QUICK) if args.quick else {}
    for name in ("iters", "act_iters"):
        if getattr(args, name) is not None:
            iters[name] = getattr(args, name)
    return calibrate.Config.named(
        args.method, args.base, w_bits=w_bits, a_bits=a_bits,
        batch=args.batch, lr=args.lr, act_lr=args.act_lr,
        round_weight=args.round_weight, group_weight=args.group_weight, drop=args.drop,
        input_scale=args.input_scale, oso_scale=not args.no_oso_scale,
        oso_offset=not args.no_oso_offset, oso_logits=not args.no_oso_logits,
        oso_off=args.no_oso_on or (), granularity=args.granularity,
        isg_shift=args.isg_shift,
        observer=args.observer, weight_observer=args.weight_observer, weight_grid=args.weight_grid,
        act_points=args.act_points, act_init=args.act_init, oso_schedule=args.oso_schedule,
        weight_levels=args.weight_levels,
        weight_granularity=args.weight_granularity, weight_rounding=args.weight_rounding,
        mixed_budget=args.mixed_budget, mixed_act_budget=args.mixed_act_budget,
        legalize_at=args.legalize_at, seed=args.seed, **iters)


def _use_threads(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def _run_calibrate(args: argparse.Namespace) -> None:
    _use_threads(args)
    size = args.size or (32 if args.data == FASHION else 224)
    weights = train.resolve_weights(args.weights, args.net, args.data, size, not args.quiet)
    run = workflow.Run(args.net, weights, args.data, size, args.images,
                       args.classes or workflow.FASHION_CLASSES)
    config = _config(args)
    summary = workflow.calibrate_network(run, config, Path(args.out), args.device, not args.quiet)
    rows = [[e["stage"], e["segment"], f"{e['loss_before']:.5g}",
             f"{e['legalize']['loss_before']:.5g} -> {e['legalize']['loss_after']:.5g}"
             if "legalize" in e else "", f"{e['loss_after']:.5g}", f"{e.get('seconds', 0):.1f}"]
            for e in summary["history"]]
    if rows:
        # in the order they happen; every loss is the hardware model's (hard rounding, legal groups
        # once fixed) over the first 256 calibration images
        print(output.table(["stage", "segment", "loss at start", "ISG groups fixed: before -> after",
                            "final loss (kept)", "s"], rows, left=2))
    chosen = workflow.load_run(Path(args.out))[1]
    for what, bits in (("per-layer weight bits", chosen.layer_w_bits), ("per-tensor activation bits", chosen.layer_a_bits)):
        if bits:
            print(f"{what}: " + ", ".join(f"{name} {b}" for name, b in bits))
    print(f"calibration: {args.out}")
    print(f"artifact: {summary['artifact']}" if "artifact" in summary else
          "no artifact: weights-only (--abits 32) and ungrouped (--input-scale free) results are "
          "not integer networks; pyioso eval reports float and fake-quant top-1")


def _add_calibrate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate", formatter_class=_RAW,
        help="post-training quantization of a torchvision CNN, exported as an integer artifact",
        description=(
            "Calibrate a network block by block (paper Algorithm 1 for --method ioso) on\n"
            "calibration images, then export the integer network the hardware runs to\n"
            "OUT/artifact. Every segment is checkpointed: rerunning the same command resumes.\n"
            "Methods: rtn (nearest rounding), adaround (layer-wise), brecq (block-wise, weights\n"
            "then activations), qdrop (one stage, activations dropped with p=0.5), ioso (on\n"
            "--base brecq or qdrop; also written brecq+ioso, qdrop+ioso).\n"
            f"Quick setting (--quick): {workflow.QUICK['iters']} weight and {workflow.QUICK['act_iters']} "
            "activation iterations per block instead of the paper's 20000 and 5000."),
        epilog=("examples:\n"
                "  pyioso calibrate --net resnet18 --weights ckpt.pt --wbits 2 --abits 4 --method ioso --out runs/r18\n"
                "  pyioso calibrate --net resnet18 --weights trained --quick --out build/calib/resnet18\n"
                "  pyioso calibrate --net resnet18 --weights random --quick --out build/calib/smoke\n"
                "  pyioso calibrate --net resnet50 --weights r50.pt --data /data/imagenet --classes 1000 "
                "--size 224 --device cuda --out runs/r50"))
    p.add_argument("--net", required=True, help="torchvision architecture (pyioso layers --net NAME "
                   "lists its layers), or your own network as module.path:factory (called with "
                   "num_classes= when it takes it); run.json records it, so eval and export rebuild it")
    p.add_argument("--weights", required=True,
                   help=f"state_dict file of the trained float network, '{train.TRAINED}' (the checkpoint of "
                        "`pyioso train --net NET`, trained first if not cached) or 'random' (untrained, seeded)")
    p.add_argument("--data", default=FASHION,
                   help=f"'{FASHION}' (built in) or an ImageFolder directory (default: {FASHION})")
    p.add_argument("--classes", type=positive_int, help="classes of the network (default: 10, Fashion-MNIST)")
    p.add_argument("--size", type=positive_int, help="input size in pixels (default: 32 for Fashion-MNIST, else 224)")
    p.add_argument("--images", type=positive_int, default=1024, help="calibration images (default: 1024)")
    p.add_argument("--wbits", type=_bits, default=4, help="weight bits 2..8 (default: 4; first/last layer 8)")
    p.add_argument("--abits", type=_bits, default=4, help="activation bits 2..8, or 32 for weights only (default: 4)")
    p.add_argument("--method", default="ioso", help="rtn, adaround, brecq, qdrop, ioso (default: ioso)")
    p.add_argument("--base", default="brecq", choices=calibrate.BASES, help="what ioso builds on (default: brecq)")
    p.add_argument("--out", required=True, help="calibration directory (checkpoints, plots, artifact/)")
    p.add_argument("--quick", action="store_true", help="the quick iteration budget (see above)")
    p.add_argument("--iters", type=nonnegative_int, help="weight-stage iterations per block (default: 20000)")
    p.add_argument("--act-iters", type=nonnegative_int, help="activation-stage iterations per block (default: 5000)")
    p.add_argument("--batch", type=positive_int, default=32, help="images per iteration (default: 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of V, R, OSO (default: 1e-3)")
    p.add_argument("--act-lr", type=float, help="Adam learning rate of activation steps (default: 4e-4, qdrop 4e-5)")
    p.add_argument("--round-weight", type=float, default=0.01, help="lambda_r (default: 0.01)")
    p.add_argument("--group-weight", type=float, default=0.01, help="lambda_g (default: 0.01)")
    p.add_argument("--drop", type=float, default=0.5, help="QDrop probability (default: 0.5)")
    p.add_argument("--input-scale", default="grouped", choices=calibrate.INPUT_SCALES,
                   help="ISG: grouped (hardware), free (ungrouped ablation, not exportable), none")
    p.add_argument("--no-oso-scale", action="store_true", help="do not learn gamma^z (ablation)")
    p.add_argument("--no-oso-offset", action="store_true", help="do not learn phi^z (ablation)")
    p.add_argument("--no-oso-logits", action="store_true",
                   help="no OSO on the classifier, the layer writing the logits: there a per-class scale and offset "
                        "fit the logits' reconstruction loss, not the top-1 decision. The paper puts OSO on every "
                        "conv and FC, the default; docs/CALIBRATION.md measures what that costs at 5,000 "
                        "iterations per block")
    p.add_argument("--no-oso-on", metavar="LAYER[,LAYER]",
                   help="no OSO on these conv/FC layers either (names as `pyioso layers --net NET` lists them), "
                        "e.g. the last block's: docs/CALIBRATION.md measures resnet18's layer4.1 at W2A2")
    p.add_argument("--granularity", type=positive_int, default=GRANULARITY, help=f"ISG group sizes in multiples of this (array rows, default: {GRANULARITY})")
    p.add_argument("--observer", default="mse", choices=OBSERVERS,
                   help="activation clipping range: minmax, ema (moving average over the images), "
                        "mse (Lp-optimal, default), kl (TensorRT's entropy), percentile (99.99)")
    p.add_argument("--weight-observer", default="mse", choices=OBSERVERS,
                   help="weight clipping range per output channel, same choices (default: mse)")
    p.add_argument("--weight-grid", default="symmetric", choices=calibrate.WEIGHT_GRIDS,
                   help="weight grid per output channel: symmetric (the engine's, default) or asymmetric "
                        "(a zero point per channel, BRECQ's and QDrop's own grid: fake-quant only, not exportable)")
    p.add_argument("--weight-levels", default="uniform", choices=LEVELS,
                   help="weights of the --wbits layers: uniform (default), ternary (TWN: {-1, 0, +1} x a channel's "
                        "alpha) or binary (XNOR-Net: {-1, +1} x mean|W|), both with --wbits 2 and exported as 2-bit "
                        "codes, ttq (TWN's codes whose positive and negative scales pyioso finetune learns, as "
                        "TTQ: fake-quant only, not exportable), or kmeans (2^wbits float centroids per layer: fake-quant only, not exportable)")
    p.add_argument("--weight-granularity", default="channel", choices=GRANULARITIES,
                   help="how weight scales are shared: channel (per output channel, default), tensor, vector "
                        "(VS-Quant: a 4-bit integer scale per 16 weights under the channel's) or mx (a shared 2^e "
                        "per 32 weights); vector and mx are fake-quant only, not exportable")
    p.add_argument("--weight-rounding", default="nearest", choices=calibrate.WEIGHT_ROUNDINGS,
                   help="rounding of weights where none is learned (rtn; AdaRound's start is nearest either way): "
                        "nearest (default) or stochastic (seeded by --seed)")
    p.add_argument("--mixed-budget", type=float, metavar="BITS",
                   help="mixed precision: per-layer weight bits in 2..4 chosen from each layer's measured sensitivity "
                        "so that the middle layers average at most BITS bits per weight (run.json records the choice; "
                        "the 8-bit first and last layers are outside it)")
    p.add_argument("--mixed-act-budget", type=float, metavar="BITS",
                   help="mixed precision of activations: per-tensor bits in 2..4 chosen from each tensor's measured "
                        "sensitivity so that the tensors the engine stores average at most BITS bits per element of "
                        "one image (its activation memory and traffic; run.json records the choice; the "
                        "classifier's 8-bit input is outside it)")
    p.add_argument("--act-points", default="engine", choices=calibrate.ACT_POINTS,
                   help="quantized tensors: engine (every tensor the engine stores, default) or reference (only "
                        "those BRECQ's or QDrop's own code quantizes: an ablation, fake-quant only, not exportable)")
    p.add_argument("--act-init", default="float", choices=calibrate.ACT_INITS,
                   help="activation steps before the activation stage: float (observed on the float network, "
                        "default) or quantized (observed again on 64 images through the weight-quantized network, "
                        "each after the codings before it, as BRECQ's own code does)")
    p.add_argument("--oso-schedule", default="constant", choices=calibrate.OSO_SCHEDULES,
                   help="OSO's learning rate over each stage: constant (at --lr, as the rounding it learns beside; "
                        "default) or cosine (from --lr to 0, as the activation steps, so the scales and offsets settle)")
    p.add_argument("--isg-shift", type=int, default=ISG_SHIFT, help=f"n of the ISG scales 1 + s 2^-n (default: {ISG_SHIFT}, the engine's)")
    p.add_argument("--legalize-at", type=float, default=0.9, help="fraction of the weight stage after which groups are fixed (default: 0.9)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of image choice, batches and drops (default: 0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_run_calibrate)


def _add_run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", dest="run_dir", required=True, help="calibration directory (pyioso calibrate --out)")


def _run_export(args: argparse.Namespace) -> None:
    directory = Path(args.run_dir)
    if args.onnx:
        result = workflow.export_onnx(directory, Path(args.onnx), args.images, progress=not args.quiet)
        top1 = result["top1"]
        print(f"onnx: {args.onnx}; on {result['images']} held-out images onnxruntime top-1 {top1['onnx']:.2f}%, "
              f"fake-quant {top1['fake-quant']:.2f}%, same class on {result['onnx_agreement']:.2f}%")
        return
    net, run, config = workflow.calibrated_network(directory)
    path = workflow.export_network(net, run, config, Path(args.out) if args.out else directory / workflow.ARTIFACT)
    print(f"artifact: {path}")


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", formatter_class=_RAW, help="write the integer artifact of a finished calibration",
        description=("Rebuild a finished calibration and write its integer network: manifest.json\n"
                     "(graph, shapes, bits, zero-points, ISG groups and permutations, M/B/F) and\n"
                     "arrays.safetensors. `pyioso calibrate` already does this into RUN/artifact."),
        epilog="examples:\n  pyioso export --run runs/r18 --out runs/r18/artifact\n"
               "  pyioso export --run runs/r18 --onnx runs/r18/model.onnx --images 10000")
    _add_run_dir(p)
    p.add_argument("--out", help="artifact directory (default: RUN/artifact)")
    p.add_argument("--onnx", metavar="FILE.onnx",
                   help="write a QDQ ONNX model instead (onnx's checker passes it), then run it under onnxruntime "
                        "next to the fake-quant network on held-out images")
    p.add_argument("--images", type=positive_int, default=1000,
                   help="held-out images of that check (default: 1000; the test split has 10000)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run=_run_export)


def _run_finetune(args: argparse.Namespace) -> None:
    _use_threads(args)
    settings = finetune.FinetuneConfig(args.epochs, args.lr, args.batch, args.images, args.seed)
    summary = workflow.finetune_network(Path(args.run_dir), Path(args.out), settings, not args.quiet)
    rows = [[e["epoch"], f"{e['loss']:.4f}", f"{e['train_top1']:.2f}"] for e in summary["epochs"]]
    print(output.table(["epoch", "training loss", "training top-1 %"], rows, left=1))
    nudges = summary["epochs"][-1].get("tie_nudges", {})
    if nudges:
        print(f"activation steps moved off a rounding tie (so the engine rounds as fake-quant does): {len(nudges)}, "
              f"by at most {100 * max(map(abs, nudges.values())):.3f}%")
    artifact = summary["artifact"] or "none (TTQ's two scales per channel are fake-quant only)"
    print(f"finetuned: {args.out}\nartifact: {artifact}\n(pyioso eval --run {args.out} compares it)")


def _add_finetune(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune", formatter_class=_RAW,
        help="quantization-aware training (STE, LSQ steps) after a calibration, exported like it",
        description=("Continue a finished calibration with quantization-aware training on the labelled\n"
                     "training split: weights through the straight-through estimator from their calibrated\n"
                     "codes, weight and activation steps as LSQ, OSO and biases, Adam with a cosine schedule.\n"
                     "ISG groups, bits and zero points stay as calibrated, so the result is an integer\n"
                     "network like any other: OUT/artifact, `pyioso eval --run OUT`, `make sim-net`."),
        epilog="example:\n  pyioso finetune --run runs/r18 --out runs/r18_qat --epochs 1")
    _add_run_dir(p)
    p.add_argument("--out", required=True, help="directory of the finetuned network (a calibration folder)")
    p.add_argument("--epochs", type=positive_int, default=1, help="passes over the training images (default: 1)")
    p.add_argument("--lr", type=float, default=finetune.FinetuneConfig.lr,
                   help=f"Adam learning rate (default: {finetune.FinetuneConfig.lr:g})")
    p.add_argument("--batch", type=positive_int, default=finetune.FinetuneConfig.batch,
                   help=f"images per step (default: {finetune.FinetuneConfig.batch})")
    p.add_argument("--images", type=positive_int, help="training images (default: the whole train split)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the image choice and order (default: 0)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_finetune)


def _run_eval(args: argparse.Namespace) -> None:
    result = workflow.evaluate(Path(args.run_dir), args.images, progress=not args.quiet)
    rows = [[name, f"{value:.2f}"] for name, value in result["top1"].items()]
    print(output.table(["model", "top-1 %"], rows, left=1))
    if result["integer_agreement"] is not None:
        print(f"integer == fake-quant prediction on {result['integer_agreement']:.2f}% of "
              f"{result['images']} images; largest logit code difference {result['max_logit_code_diff']}")
    print(f"eval: {Path(args.run_dir) / 'eval.json'}")


def _add_eval(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", formatter_class=_RAW,
        help="top-1 of the float, fake-quant and integer networks side by side",
        description=("Evaluate a calibration on held-out images (the Fashion-MNIST test split, or\n"
                     "val/ of an ImageFolder): the float network, the fake-quant network, and the\n"
                     "integer network run by golden from the artifact alone."),
        epilog="example:\n  pyioso eval --run runs/r18 --images 2000")
    _add_run_dir(p)
    p.add_argument("--images", type=positive_int, help="held-out images (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_eval)


def _run_train(args: argparse.Namespace) -> None:
    _use_threads(args)
    recipe = train.Recipe(args.net, size=args.size, epochs=args.epochs, seed=args.seed,
                          batch=args.batch, lr=args.lr)
    reused = train.cached(recipe) is not None
    path, record = train.train(recipe, progress=not args.quiet)
    origin = " (published)" if path.parent == train.PUBLISHED else " (cached)" if reused else ""
    print(f"{record['net']}: float top-1 {record['top1']:.2f}% on the 10k test images, "
          f"{record['epochs']} epochs, seed {record['seed']}, {record['train_seconds']:.0f} s "
          f"on {record['threads']} thread(s){origin}")
    print(f"checkpoint: {path}")


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", formatter_class=_RAW,
        help="train a torchvision network on Fashion-MNIST (the project's own float checkpoints)",
        description=("Train NET on the 60k Fashion-MNIST training images, deterministically from\n"
                     "--seed, and report float top-1 on the 10k test images. Images are resized\n"
                     "to --size pixels, repeated to 3 channels and ImageNet-normalized; the\n"
                     "architecture is torchvision's with a 10-class head. The checkpoint and a JSON\n"
                     "record (seed, epochs, time, top-1, SHA-256) go to $PYIOSO_CACHE/checkpoints\n"
                     "(default ~/.cache/pyioso/checkpoints); a finished run is reused, an\n"
                     "interrupted one resumes from its last epoch. A recipe published in git\n"
                     "(pyioso/models/checkpoints: resnet18 at 32 px) resolves to that checkpoint\n"
                     "on every machine without training (training differs per CPU model)."),
        epilog=("examples:\n"
                "  pyioso train --net resnet18\n"
                "  pyioso calibrate --net resnet18 --weights trained --quick --out build/calib/resnet18"))
    p.add_argument("--net", required=True, help="torchvision architecture")
    p.add_argument("--size", type=positive_int, default=32, help="input size in pixels (default: 32)")
    p.add_argument("--epochs", type=positive_int, default=train.Recipe.epochs,
                   help=f"epochs (default: {train.Recipe.epochs})")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of initialization, order, augmentation (default: 0)")
    p.add_argument("--batch", type=positive_int, default=train.Recipe.batch, help=f"batch size (default: {train.Recipe.batch})")
    p.add_argument("--lr", type=float, default=train.Recipe.lr, help=f"peak SGD learning rate (default: {train.Recipe.lr})")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's; recorded)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_run_train)


COMMANDS = (_add_train, _add_calibrate, _add_finetune, _add_export, _add_eval)
