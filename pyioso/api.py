"""pyioso as a library: quantize a PyTorch CNN, evaluate it, export its integer artifact, and run
that artifact on golden or on the engine's RTL.

    calibration = pyioso.quantize(model, images, wbits=2, abits=4, method="ioso")
    calibration.evaluate(test_images, labels)       # top-1: float, fake-quant, integer
    calibration.export("out/artifact")
    network = pyioso.load("out/artifact")
    network.predict(test_images)                    # golden, integers only
    network.run(test_images[:1], backend="rtl")     # the same logit codes, from the RTL

Images are float NCHW tensors as the model takes them (pyioso's own data: ImageNet-normalized,
3 channels). Names and defaults follow `pyioso calibrate`; the CLI runs the same steps with files.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

import torch
from torch import nn

from golden.errors import PyiosoError
from pyioso.calib import calibrate, export, finetune, onnx_export, qnet, workflow
from pyioso.integer import artifact, intnet

BACKENDS_GROUP = "pyioso.backends"      # entry points: name -> callable(IntNet, input codes) -> logit codes


def quantize(model: nn.Module, images: torch.Tensor, *, wbits: int = 4, abits: int | None = 4,
             method: str = "ioso", base: str = "brecq", iters: int = workflow.QUICK["iters"],
             act_iters: int = workflow.QUICK["act_iters"], seed: int = 0, progress: bool = True,
             **settings) -> Calibration:
    """Calibrate `model` (any torch.fx-traceable CNN of the spec's ops) on `images`.

    wbits/abits: 2..8 (abits None or 32: weights only); method: rtn, adaround, brecq, qdrop,
    ioso (on `base`: brecq or qdrop); iters/act_iters: reconstruction iterations per block (the
    default is the CLI's --quick budget; the papers use 20000/5000); `settings`: any other field
    of pyioso.calib.calibrate.Config (lr, drop, input_scale, observer, weight_grid, ...).
    The model is copied, never changed; an op outside the spec is refused, naming the node,
    before any calibration work."""
    if not isinstance(model, nn.Module):
        raise PyiosoError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_images(images, "images")
    w_bits, a_bits = workflow.calibration_bits(wbits, abits)
    config = calibrate.Config.named(method, base, w_bits=w_bits, a_bits=a_bits,
                                    iters=iters, act_iters=act_iters, seed=seed, **settings)
    model = copy.deepcopy(model).eval()
    config = workflow.with_layer_bits(config, model, images)
    net = workflow.quantized_network(model, config, images)
    calibrator = calibrate.Calibrator(net, images, config, progress=progress)
    history = calibrator.run().segments
    return Calibration(net, config, model, history, size=int(images.shape[-1]), channels=int(images.shape[1]))


def _check_labels(labels, images: torch.Tensor) -> None:
    if not isinstance(labels, torch.Tensor) or labels.shape != images.shape[:1]:
        raise PyiosoError(f"labels must be a tensor of {len(images)} class indices, one per image")


def _check_images(images, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise PyiosoError(f"{name} must be a float tensor [N, C, H, W] as the model takes them, got {shape}")
    if images.shape[-1] != images.shape[-2]:
        raise PyiosoError(f"{name} are {images.shape[-2]}x{images.shape[-1]}: the engine takes square inputs")


@dataclass
class Calibration:
    """A calibrated network: the fake-quant `network`, its `config` and reconstruction `history`
    (each stage's loss per block), next to the float `model` it came from."""

    network: qnet.QNet
    config: calibrate.Config
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    size: int = 32
    channels: int = 3

    @property
    def exportable(self) -> bool:
        """Whether the integer engine runs it (activations quantized, grouped input scales,
        symmetric weight grids)."""
        return workflow.exportable(self.config)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The fake-quant logits as codes of the output coding (floats for weights only)."""
        _check_images(images, "images")
        return workflow.logit_codes(self.network, images)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Classes of the fake-quant network."""
        return self.logits(images).argmax(1)

    def integer(self) -> intnet.IntNet:
        """The integer network golden runs (what `export` writes), in storage order."""
        if not self.exportable:
            raise PyiosoError(f"this calibration ({self.config.method}, a_bits {self.config.a_bits}, input scales "
                              f"{self.config.input_scale}, {self.config.weight_grid} weights, {self.config.act_points} "
                              "points) is not an integer network: quantize activations at the engine's points, "
                              "keep grouped input scales and symmetric weights")
        return export.integer_network(self.network, self.config.granularity)[0]

    def evaluate(self, images: torch.Tensor, labels: torch.Tensor, batch: int = 250,
                 progress: bool = False) -> dict:
        """Top-1 % of the float model, the fake-quant network and (when exportable) the integer
        one on the same images, with how often integer and fake-quant predictions agree."""
        _check_images(images, "images")
        _check_labels(labels, images)
        return workflow.side_by_side(self.model, self.network, self.integer() if self.exportable else None,
                                     images, labels, batch, progress)

    def finetune(self, images: torch.Tensor, labels: torch.Tensor, epochs: int = 1, lr: float = 1e-5,
                 batch: int = 64, seed: int = 0, progress: bool = False) -> list[dict]:
        """Quantization-aware training of this calibration in place (pyioso.calib.finetune: STE from
        the calibrated codes, LSQ steps, OSO, biases; ISG groups and bits kept); per epoch its
        training loss and top-1. The result exports like the calibration."""
        _check_images(images, "images")
        _check_labels(labels, images)
        if not self.exportable:
            raise PyiosoError("finetune keeps a network the engine runs: this calibration is not one (see .integer())")
        settings = finetune.FinetuneConfig(epochs, lr, batch, None, seed)
        epochs_run = finetune.finetune(self.network, images, labels, settings, progress)
        calibrate.finish(self.network, self.config)
        return epochs_run

    def export(self, path: str | Path, name: str = "network") -> Path:
        """Write the integer artifact (weights, tables, permutations; digest-sealed) to `path`."""
        last = self.integer().steps[-1].op       # refuses what the engine cannot run, before any write
        if not hasattr(last, "weight"):
            raise PyiosoError(f"the network ends in a {type(last).__name__}, not an FC or conv: its classes are "
                              "the logits of a last linear layer")
        return workflow.save_artifact(self.network, self.config, Path(path),
                                      {"name": name, "classes": int(last.weight.shape[0]), "size": self.size,
                                       "channels": self.channels},
                                      {"data": "python", "images": None, "weights": None})

    def export_onnx(self, path: str | Path) -> Path:
        """Write a standard QDQ ONNX model of the fake-quant network (pyioso.calib.onnx_export),
        checked by onnx's checker; onnxruntime runs it."""
        return onnx_export.save(self.network, path, self.size, self.channels)


def load(path: str | Path) -> IntegerNetwork:
    """An exported artifact, validated (a corrupted or edited one is refused)."""
    net, doc = artifact.load(path)
    return IntegerNetwork(net, doc)


@dataclass
class IntegerNetwork:
    """An artifact's integer network; `run` gives its logit codes on a backend."""

    net: intnet.IntNet
    manifest: dict

    @property
    def name(self) -> str:
        return artifact.label(self.manifest)

    def quantize_input(self, images: torch.Tensor) -> torch.Tensor:
        """Float images -> the input codes the integer network takes (NHWC)."""
        _check_images(images, "images")
        return self.net.quantize_input(images)

    def run(self, images: torch.Tensor, backend: str = "golden") -> torch.Tensor:
        """Logit codes [N, classes]: golden's integer ops, or another backend by name ("rtl":
        the engine's Verilog under Verilator, every op in turn, from sim/)."""
        codes = self.quantize_input(images)
        if backend == "golden":
            return self.net.forward(codes)[0].reshape(len(codes), -1)
        return backend_function(backend)(self.net, codes).reshape(len(codes), -1)

    def predict(self, images: torch.Tensor, backend: str = "golden") -> torch.Tensor:
        return self.run(images, backend).argmax(1)


def backend_function(name: str):
    """The backend registered under `name` (entry points of group pyioso.backends)."""
    found = {e.name: e for e in entry_points(group=BACKENDS_GROUP)}
    if name not in found:
        raise PyiosoError(f"backend {name!r}: use golden{''.join(', ' + n for n in sorted(found))} (more register "
                          f"as entry points of group {BACKENDS_GROUP!r})")
    return found[name].load()
