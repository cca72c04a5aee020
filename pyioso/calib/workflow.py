"""What `pyioso calibrate`, `export` and `eval` do, as functions (the CLI only parses flags).

A calibration directory holds ``run.json`` (the settings, enough to rebuild the fake-quant
network), ``checkpoint.pt`` (state after every segment: resume; removed once ``calibrated.pt``
holds the final state), ``history.json``, ``calibrate.log``, plots, and ``artifact/`` (the
integer network). The same command on a finished directory re-exports its result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from golden.errors import PyiosoError
from pyioso import output
from pyioso.calib import calibrate, export, finetune, mixed, plots, qnet
from pyioso.data.datasets import FASHION, calibration_images, check_classes, labelled_images
from pyioso.data.images import IMAGENET_MEAN, IMAGENET_STD
from pyioso.integer import artifact
from pyioso.models.weights import load_model
from pyioso.quant.granularity import INTEGER_GRANULARITIES
from pyioso.quant.levels import INTEGER_LEVELS

RUN, FINAL, HISTORY, ARTIFACT, LOG = "run.json", "calibrated.pt", "history.json", "artifact", "calibrate.log"
FINETUNE = "finetune.json"      # a finetuned folder's epochs (pyioso finetune)
LOCK = ".lock"          # held (flock) by the calibration running in the folder
FASHION_CLASSES = 10
HELD_OUT = 1024         # training images past the calibration's that measure its generalization
INIT_IMAGES = 64        # images the MSE observers initialize the activation codings on
QUICK = {"iters": 200, "act_iters": 50}     # the documented quick setting


@dataclass(frozen=True)
class Run:
    """Where the float network and its calibration images come from."""

    net: str
    weights: str
    data: str = FASHION
    size: int = 32
    images: int = 1024
    classes: int = FASHION_CLASSES

    def model(self, seed: int) -> torch.nn.Module:
        return load_model(self.net, self.weights, self.classes, seed)

    def calibration_set(self, seed: int) -> torch.Tensor:
        if self.data == FASHION:
            return calibration_images(self.images, self.size, seed)
        return labelled_images(self.data, "train", self.size, self.images, seed)[0]


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise PyiosoError("--device cuda: this torch has no CUDA device (CPU build or no GPU); "
                          "use --device cpu")
    if name not in ("cpu", "cuda"):
        raise PyiosoError(f"--device {name!r}: use cpu or cuda")
    return torch.device(name)


def calibration_bits(wbits: int, abits: int | None, flag: str = "") -> tuple[int, int | None]:
    """(w_bits, a_bits) of a calibration as the CLI (flag "--") and the API take them: both in
    2..8, activations 32 or None for weights only (a_bits None)."""
    if not 2 <= wbits <= 8:
        raise PyiosoError(f"{flag}wbits {wbits} is out of range: the integer datapath takes 2..8")
    if abits is not None and abits != 32 and not 2 <= abits <= 8:
        raise PyiosoError(f"{flag}abits {abits} is out of range: use 2..8, or 32 for weights only")
    return wbits, None if abits in (None, 32) else abits


def build_network(run: Run, config: calibrate.Config, images: torch.Tensor, model=None) -> qnet.QNet:
    return quantized_network(model if model is not None else run.model(config.seed), config, images)


def quantized_network(model: torch.nn.Module, config: calibrate.Config, images: torch.Tensor) -> qnet.QNet:
    """The fake-quant network of a float model under `config`, its codings observed on the first
    INIT_IMAGES of `images`."""
    weights = qnet.WeightFormat(config.weight_observer, config.weight_grid == "symmetric", config.weight_levels,
                                config.weight_granularity, config.weight_rounding == "stochastic", config.seed)
    return qnet.build(model, images[:INIT_IMAGES], config.w_bits, config.a_bits or 8, config.isg_shift,
                      config.observer, weights, config.quant_points, dict(config.layer_w_bits),
                      dict(config.layer_a_bits))


def with_layer_bits(config: calibrate.Config, model: torch.nn.Module, images: torch.Tensor) -> calibrate.Config:
    """`config` with its mixed-precision budgets resolved into per-layer weight bits and per-tensor
    activation bits (pyioso.calib.mixed), from the sensitivity measured on `images`; unchanged
    without a budget or with the bits given."""
    weights = config.mixed_budget is not None and not config.layer_w_bits
    acts = config.mixed_act_budget is not None and not config.layer_a_bits
    if not (weights or acts):
        return config
    net = quantized_network(model, config, images)     # the measurements leave it as they found it
    if weights:
        layers = mixed.budget_layers(net, config.w_bits)
        bits = mixed.allocate(mixed.sensitivity(net, images, layers),
                              {n: c.weight.numel() for n, c in layers.items()}, config.mixed_budget)
        config = dataclasses.replace(config, layer_w_bits=tuple(bits.items()))
    if acts:
        sens, sizes = mixed.act_sensitivity(net, images, mixed.budget_tensors(net, config.a_bits), config.observer)
        bits = mixed.allocate(sens, sizes, config.mixed_act_budget)
        config = dataclasses.replace(config, layer_a_bits=tuple(bits.items()))
    return config


def calibrate_network(run: Run, config: calibrate.Config, out: Path, device: str = "cpu",
                      progress: bool = True, stop_after: int | None = None,
                      checkpoints: bool = True) -> dict:
    """Calibrate, save the final state, export the artifact (if activations are quantized),
    write history and plots. Resumes from ``out/checkpoint.pt`` when one matches (checkpoints
    off: callers that resume at a coarser grain, like the benchmark's cells). Returns the
    history, the finished fake-quant network ("network"), the artifact's path and the seconds
    earlier runs of a resumed calibration spent ("resumed_seconds")."""
    dev = _device(device)
    if out.exists() and not out.is_dir():
        raise PyiosoError(f"--out {out} is a file: give a directory for the calibration")
    check_classes(run.data, run.classes)
    # the network and the images first: a bad net, weights or data leaves no folder behind
    _say(progress, f"loading {run.net} ({run.weights})")
    model = run.model(config.seed)
    calibrate.check_oso_off(config, calibrate.weight_layers(model))
    _say(progress, f"reading {run.images} calibration images ({run.data}, {run.size} px)")
    images = run.calibration_set(config.seed)
    if (config.mixed_budget is not None and not config.layer_w_bits) or \
            (config.mixed_act_budget is not None and not config.layer_a_bits):
        _say(progress, "measuring each layer's and tensor's sensitivity for the mixed-precision budgets")
        config = with_layer_bits(config, model, images)
    # what the folder's result depends on beyond the settings: a checkpoint retrained in place
    # (the same path, other weights) must not pass for the finished calibration of the old one
    key = calibrate.fingerprint(model.state_dict(), images, run.__dict__)
    record = {"run": run.__dict__, "config": config.to_json(), "fingerprint": key}
    _check_same_run(out, record)
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        _check_same_run(out, record)        # again, now that no other run can write it
        return _calibrate_in(out, run, config, record, model, images, dev, progress, stop_after,
                             checkpoints)


def _check_same_run(out: Path, record: dict) -> None:
    if not (out / RUN).is_file():
        return
    saved = json.loads((out / RUN).read_text())
    if _settings(saved) != _settings(record):
        raise PyiosoError(f"--out {out} holds a calibration with other settings (its {RUN} differs): "
                          "give another --out, or remove the folder to start over")
    if saved.get("fingerprint", record.get("fingerprint")) != record.get("fingerprint"):
        raise PyiosoError(f"--out {out} holds a calibration of other float weights or calibration "
                          f"images (the file {record['run']['weights']} or the data changed since, e.g. "
                          "retrained): give another --out, or remove the folder to start over")


def _settings(record: dict) -> dict:
    """A run.json record's settings, each spelled out: a folder written before a setting existed
    holds its default, and resumes. (Its fingerprint is compared apart; folders written before
    it was recorded have none.)"""
    record = {k: v for k, v in record.items() if k != "fingerprint"}
    config = calibrate.full_settings(record.get("config"))
    return json.loads(json.dumps(record if config is None else {**record, "config": config}))


@contextlib.contextmanager
def _exclusive(out: Path):
    """An exclusive lock on the calibration folder for as long as the calibration runs; a second
    calibration into the same folder is refused, not interleaved."""
    with open(out / LOCK, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "another process"
            raise PyiosoError(f"--out {out} is in use by a calibration running now (pid {owner}): "
                              "wait for it to finish, or give another --out") from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _calibrate_in(out: Path, run: Run, config: calibrate.Config, record: dict, model, images,
                  dev: torch.device, progress: bool, stop_after: int | None, checkpoints: bool) -> dict:
    handler = logging.FileHandler(out / LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    calibrate.log.addHandler(handler)
    calibrate.log.setLevel(logging.INFO)
    try:
        _say(progress, f"building the quantized network (observers on {min(INIT_IMAGES, len(images))} images)")
        net = build_network(run, config, images, model).to(dev)
        if (out / FINAL).is_file() and (out / HISTORY).is_file():
            # finished before: its result again (re-exported), not a second calibration
            calibrate.log.info("already calibrated: %s", out / FINAL)
            net = net.cpu()
            calibrate.restore(net, torch.load(out / FINAL, map_location="cpu", weights_only=False))
            calibrate.finish(net, config)
            segments, resumed_seconds = json.loads((out / HISTORY).read_text()), 0.0
        else:
            output.write_json(str(out / RUN), record)
            segments, resumed_seconds = _calibrate_segments(out, net, images.to(dev), config,
                                                            record["fingerprint"], progress, stop_after, checkpoints)
            if segments is None:
                return {"stopped": True}
            net = net.cpu()
            output.atomic_write(str(out / FINAL), lambda f: torch.save(
                {"structure": calibrate.structure(net), "state": net.state_dict()}, f))
            output.write_json(str(out / HISTORY), segments)
            (out / calibrate.CHECKPOINT).unlink(missing_ok=True)    # calibrated.pt holds the result
        summary = {"history": segments, "network": net, "resumed_seconds": resumed_seconds}
        if exportable(config):
            summary["artifact"] = str(export_network(net, run, config, out / ARTIFACT))
        plots.calibration(segments, out)
        return summary
    finally:
        calibrate.log.removeHandler(handler)
        handler.close()


def _calibrate_segments(out: Path, net: qnet.QNet, images: torch.Tensor, config: calibrate.Config,
                        key: str, progress: bool, stop_after: int | None, checkpoints: bool) -> tuple[list | None, float]:
    """Run the calibrator (resuming from out/checkpoint.pt): its history (None when stopped) and
    the seconds that runs before it spent on the calibration, as their last checkpoint saved them."""
    calibrator = calibrate.Calibrator(net, images, config, out if checkpoints else None, key, progress)
    try:
        history = calibrator.run(stop_after)
    except KeyboardInterrupt:
        saved = (f"every finished block is saved in {out / calibrate.CHECKPOINT}: the same "
                 "command resumes from there" if checkpoints else "nothing was saved")
        raise KeyboardInterrupt(f"calibration interrupted; {saved}") from None
    return (history.segments if calibrator.complete else None), calibrator.resumed_seconds


def _say(progress: bool, what: str) -> None:
    """One line on what a slow step does, as it starts (progress bars come later, or never)."""
    if progress:
        print(f"pyioso: {what} ...", file=sys.stderr, flush=True)


def exportable(config: calibrate.Config) -> bool:
    """Whether the hardware can run the result: activations quantized at every point the engine
    stores, ISG scales grouped, weights integer codes on symmetric grids."""
    return (config.a_bits is not None and not (config.ioso and config.input_scale == "free")
            and config.weight_grid == "symmetric" and config.act_points == "engine"
            and config.weight_levels in INTEGER_LEVELS and config.weight_granularity in INTEGER_GRANULARITIES)


def export_network(net: qnet.QNet, run: Run, config: calibrate.Config, directory: Path) -> Path:
    return save_artifact(net, config, directory, {"name": run.net, "classes": run.classes, "size": run.size},
                         {"data": run.data, "images": run.images, "weights": Path(run.weights).name})


def save_artifact(net: qnet.QNet, config: calibrate.Config, directory: Path, network: dict,
                  calibration: dict) -> Path:
    """The artifact of a calibrated network; `network` names it (name, classes, size of its
    ImageNet-normalized 3-channel input), `calibration` says what it was calibrated on."""
    integer, perms = export.integer_network(net, config.granularity)
    info = {"network": {"channels": 3, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), **network},
            "calibration": {"config": config.to_json(), **calibration}}
    return artifact.save(directory, integer, perms, info)


def logit_codes(net: qnet.QNet, x: torch.Tensor) -> torch.Tensor:
    """The fake-quant network's logits as the codes of its output coding (what the integer
    network computes), or its float logits when its activations are not quantized or its logits
    are kept float (--act-points reference: rounding them afterwards would make ties it never had)."""
    fake = net(x)
    out = net.coding(net.output_name)
    if not net.input_quant.enabled or out.kept_float:
        return fake
    return torch.round(fake / out.scale).to(torch.int64) + out.zero_point


def side_by_side(model: torch.nn.Module | None, net: qnet.QNet, int_net, x: torch.Tensor, labels: torch.Tensor,
                 batch: int = 250, progress: bool = True) -> dict:
    """Top-1 of the float model (if given), the fake-quant network and the integer one (if
    given) on the same images, how often the integer predictions equal the fake-quant ones, and
    the largest difference of their logit codes."""
    from tqdm import tqdm

    hits = {"float": 0, "fake-quant": 0, "integer": 0}
    agree, max_diff = 0, 0
    with torch.no_grad():
        for start in tqdm(range(0, len(x), batch), desc="eval", unit="batch", disable=not progress):
            xb, yb = x[start:start + batch], labels[start:start + batch]
            if model is not None:
                hits["float"] += int((model(xb).argmax(1) == yb).sum())
            codes = logit_codes(net, xb)
            hits["fake-quant"] += int((codes.argmax(1) == yb).sum())
            if int_net is not None:
                int_codes = int_net.forward(int_net.quantize_input(xb))[0]
                hits["integer"] += int((int_codes.argmax(1) == yb).sum())
                agree += int((int_codes.argmax(1) == codes.argmax(1)).sum())
                max_diff = max(max_diff, int((int_codes - codes).abs().max()))
    n = len(x)
    kept = {"float": model is not None, "fake-quant": True, "integer": int_net is not None}
    return {"images": n, "top1": {k: 100 * v / n for k, v in hits.items() if kept[k]},
            "integer_agreement": 100 * agree / n if int_net else None,
            "max_logit_code_diff": max_diff if int_net else None}


def finetune_network(directory: Path, out: Path, settings: finetune.FinetuneConfig, progress: bool = True) -> dict:
    """`pyioso finetune`: a finished calibration continued by quantization-aware training
    (pyioso.calib.finetune) into `out`, a calibration folder of its own (run.json with the
    finetune settings, calibrated.pt, history.json, finetune.json with the epochs, artifact/ but
    for TTQ), so eval, export, sim-net and the API take it like any other. A finished `out` is reused."""
    run, config = load_run(directory)
    if not exportable(dataclasses.replace(config, weight_levels="ternary") if config.weight_levels == "ttq" else config):
        raise PyiosoError(f"{directory} is not an integer network (weights only, free input scales, an asymmetric "
                          "grid or the reference's points): finetune keeps a network the engine runs (or TTQ's, "
                          "the same but for its scales); calibrate one with --abits 2..8 and the defaults")
    if out.resolve() == directory.resolve():
        raise PyiosoError(f"--out {out} is the calibration itself: finetune writes a new folder, give another --out")
    if out.exists() and not out.is_dir():
        raise PyiosoError(f"--out {out} is a file: give a directory for the finetuned network")
    record = {**json.loads((directory / RUN).read_text()), "finetune": {**settings.to_json(), "from": str(directory)}}
    _check_same_run(out, record)
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        if (out / FINAL).is_file() and (out / FINETUNE).is_file():
            net, epochs = calibrated_network(out)[0], json.loads((out / FINETUNE).read_text())
        else:
            net = calibrated_network(directory)[0]
            _say(progress, f"reading {settings.images or 'all'} training images ({run.data}, {run.size} px)")
            x, labels = labelled_images(run.data, "train", run.size, settings.images, seed=settings.seed)
            epochs = finetune.finetune(net, x, labels, settings, progress)
            output.write_json(str(out / RUN), record)
            output.atomic_write(str(out / FINAL), lambda f: torch.save(
                {"structure": calibrate.structure(net), "state": net.state_dict()}, f))
            output.write_json(str(out / HISTORY), json.loads((directory / HISTORY).read_text()))
            output.write_json(str(out / FINETUNE), epochs)
        calibrate.finish(net, config)
        exported = export_network(net, run, config, out / ARTIFACT) if exportable(config) else None
        return {"epochs": epochs, "network": net, "artifact": exported and str(exported)}


def export_onnx(directory: Path, path: Path, images: int | None = 1000, progress: bool = True) -> dict:
    """Write a finished calibration as a QDQ ONNX model (pyioso.calib.onnx_export) and measure it
    under onnxruntime next to the fake-quant network on held-out images: top-1 of both and how
    often their classes agree. The result is also written next to the model (PATH.json)."""
    from pyioso.calib import onnx_export

    run, config = load_run(directory)
    if config.a_bits is None:
        raise PyiosoError(f"{directory} is a weight-only calibration: a QDQ model needs quantized activations")
    _say(progress, f"rebuilding the calibrated network from {directory / FINAL}")
    net = calibrated_network(directory)[0]
    onnx_export.save(net, path, run.size)
    _say(progress, f"running {path} under onnxruntime on {images or 'all'} held-out images")
    x, labels = labelled_images(run.data, "test", run.size, images, seed=config.seed + 1)
    with torch.no_grad():
        fake = torch.cat([logit_codes(net, x[i:i + 250]) for i in range(0, len(x), 250)]).argmax(1)
    ort = onnx_export.run(path, x).argmax(1)
    n = len(x)
    top1 = {"onnx": 100 * int((ort == labels).sum()) / n, "fake-quant": 100 * int((fake == labels).sum()) / n}
    result = {"images": n, "data": run.data, "onnx": str(path), "top1": top1,
              "onnx_agreement": 100 * int((ort == fake).sum()) / n}
    output.write_json(str(path.with_suffix(".json")), result)
    return result


def generalization(net: qnet.QNet, run: Run, config: calibrate.Config, held_out: int = HELD_OUT) -> dict:
    """Each block's final reconstruction loss on the calibration images and on `held_out` other
    training images, the next ones of the same seeded draw (the finished fake-quant network
    `net`, measured alike on both): a lower loss that does not carry over to images the
    calibration never saw is the calibration fitting its images. (Fitting is measured on training
    images: the float network was trained on that split, so its features differ on test images.)
    The loss on `held_out` test images, the split top-1 is measured on, comes with them: whether
    the loss a calibration lowered still tracks what top-1 sees."""
    drawn = dataclasses.replace(run, images=run.images + held_out).calibration_set(config.seed)
    test = labelled_images(run.data, "test", run.size, held_out, seed=config.seed + 1)[0]
    return {split: calibrate.Calibrator(net, images, config, progress=False).final_losses()
            for split, images in (("calibration", drawn[:run.images]), ("held_out", drawn[run.images:]),
                                  ("test", test))}


def load_run(directory: Path) -> tuple[Run, calibrate.Config]:
    path = directory / RUN
    if not path.is_file():
        raise PyiosoError(f"{directory} holds no {RUN}: point at a directory written by "
                          "`pyioso calibrate --out`")
    doc = json.loads(path.read_text())
    config = doc["config"]
    config["beta"] = tuple(config["beta"])
    return Run(**doc["run"]), calibrate.Config(**config)


def calibrated_network(directory: Path) -> tuple[qnet.QNet, Run, calibrate.Config]:
    """The fake-quant network of a finished calibration, rebuilt from its float weights."""
    run, config = load_run(directory)
    if not (directory / FINAL).is_file():
        raise PyiosoError(f"{directory} has no {FINAL}: the calibration did not finish; rerun "
                          "the same `pyioso calibrate` command to resume it")
    net = build_network(run, config, run.calibration_set(config.seed))
    calibrate.restore(net, torch.load(directory / FINAL, map_location="cpu", weights_only=False))
    calibrate.finish(net, config)
    return net, run, config


def evaluate(directory: Path, images: int | None = None, batch: int = 250,
             progress: bool = True, integer: bool = True, net: qnet.QNet | None = None) -> dict:
    """Top-1 of the float, fake-quant and integer (unless `integer` is False or the calibration
    is not exportable; a missing artifact is refused) networks on held-out images, side by
    side, with how often the integer predictions equal the fake-quant ones. `net`: the finished
    fake-quant network, when the caller has it (calibrate_network's summary), instead of
    rebuilding it from the directory."""
    run, config = load_run(directory)
    if integer and exportable(config) and not (directory / ARTIFACT).is_dir():
        raise PyiosoError(f"{directory / ARTIFACT} is missing, so the integer network cannot be "
                          f"evaluated: export it again with `pyioso export --run {directory}`")
    int_net = artifact.load(directory / ARTIFACT)[0] if integer and exportable(config) else None
    if net is None:
        _say(progress, f"rebuilding the calibrated network from {directory / FINAL}")
        net = calibrated_network(directory)[0]
    model = run.model(config.seed)
    _say(progress, f"reading {images or 'all'} held-out images ({run.data}, {run.size} px)")
    x, labels = labelled_images(run.data, "test", run.size, images, seed=config.seed + 1)
    compared = side_by_side(model, net, int_net, x, labels, batch, progress)
    result = {"images": compared["images"], "data": run.data, **compared}
    output.write_json(str(directory / "eval.json"), result)
    plots.accuracy(result, directory / "eval.png")
    return result
