"""`pyioso train`: the project's own float checkpoints, trained on Fashion-MNIST deterministically.

Input adaptation (one rule for every network, the same as calibration and evaluation use): the
28x28 grayscale image is resized bilinearly to ``size`` pixels (32 by default), repeated to three
channels and ImageNet-normalized (pyioso.data.images.normalize); the torchvision architecture itself is
unchanged apart from its 10-class head. Training adds a random crop (4-pixel zero padding) and a
horizontal flip. SGD with Nesterov momentum and a one-cycle learning rate schedule. BatchNorm keeps
its running statistics with torch's momentum 0.1 in every network: torchvision's MnasNet sets
0.0003 (TensorFlow's value, made for hundreds of thousands of steps), which after this recipe's few
thousand steps would leave a third of the evaluation statistics' weight on their initial mean 0,
variance 1.

Every random draw (initialization, epoch order, augmentation, dropout) comes from the seed and
the epoch number, so a run resumed from its per-epoch checkpoint ends with the same weights as an
uninterrupted one. Checkpoints live in a cache folder outside git (``$PYIOSO_CACHE``, default
``~/.cache/pyioso``) and are reused when present.

Training is byte-identical per CPU model only (oneDNN and MKL pick their kernels, and with them the
order of their sums, by instruction set), so a checkpoint the benchmarks recorded cells on is
published in git (``pyioso/models/checkpoints``, with its record): a recipe with a published
checkpoint resolves to it on every machine, and results on it accumulate across machines.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from golden.errors import PyiosoError
from pyioso import output
from pyioso.data.datasets import FASHION, fashion_mnist
from pyioso.data.images import normalize
from pyioso.models import tv

CLASSES = 10
BN_MOMENTUM = 0.1           # torch's default, which every other supported network already uses
TRAINED = "trained"         # --weights value: the checkpoint of the default recipe


PUBLISHED = Path(__file__).parent / "checkpoints"


def cache_dir() -> Path:
    return Path(os.environ.get("PYIOSO_CACHE") or Path.home() / ".cache" / "pyioso") / "checkpoints"


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the trained weights (with the torch build and thread count)."""

    net: str
    size: int = 32
    epochs: int = 8
    seed: int = 0
    batch: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4

    def stem(self) -> str:
        return f"{self.net}_fmnist{self.size}_e{self.epochs}_s{self.seed}"

    def check(self) -> Recipe:
        net = tv.check_network(self.net)
        if not 16 <= self.size <= 224:
            raise PyiosoError(f"--size {self.size}: use 16..224 pixels")
        if self.epochs < 1 or self.batch < 2:
            raise PyiosoError(f"--epochs {self.epochs} / batch {self.batch}: use at least 1 epoch, 2 images")
        return Recipe(**{**asdict(self), "net": net})


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 4-pixel-padded crop and horizontal flip, per image, from the generator."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dy, dx = (torch.randint(0, 9, (n,), generator=generator) for _ in range(2))
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(n, x.shape[1], h, w + 8)
    x = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(n, x.shape[1], h, w)
    x = x.gather(3, cols)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def accuracy(model: torch.nn.Module, size: int, batch: int = 500) -> float:
    """Top-1 (%) on the 10k Fashion-MNIST test images."""
    images, labels = fashion_mnist("test")
    model.eval()
    hits = 0
    with torch.no_grad():
        for start in range(0, len(images), batch):
            logits = model(normalize(images[start:start + batch], size))
            hits += int((logits.argmax(1) == labels[start:start + batch]).sum())
    return 100 * hits / len(images)


def cpu_model() -> str:
    """The CPU model a checkpoint was trained on (what its bytes depend on beside the recipe)."""
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def sha256(path: Path) -> str:
    """A checkpoint's identity: training is byte-identical per CPU model, not across models."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _finished(folder: Path, recipe: Recipe, fix: str) -> tuple[Path, dict] | None:
    """(checkpoint, record) of the recipe in this folder, if both are there and agree."""
    path, record_path = (folder / f"{recipe.stem()}{ext}" for ext in (".pt", ".json"))
    if not (path.is_file() and record_path.is_file()):
        return None
    record = json.loads(record_path.read_text())
    if record.get("sha256") != sha256(path):
        raise PyiosoError(f"{path} does not match its record {record_path} (corrupt or replaced): {fix}")
    return path, record


def cached(recipe: Recipe) -> tuple[Path, dict] | None:
    """(checkpoint, record) of the recipe: the published one where git holds it (whatever this
    machine's cache holds), else a finished training run in the cache; None if neither."""
    recipe = recipe.check()
    return (_finished(PUBLISHED, recipe, "restore it with `git checkout -- pyioso/models/checkpoints`")
            or _finished(cache_dir(), recipe, "delete both and run `pyioso train` again"))


def train(recipe: Recipe, progress: bool = True) -> tuple[Path, dict]:
    """Train (or resume, or reuse) the recipe's checkpoint; returns its path and record."""
    from tqdm import tqdm

    recipe = recipe.check()
    done = cached(recipe)
    if done:
        return done
    images, labels = fashion_mnist("train")
    model = tv.build_model(recipe.net, CLASSES, seed=recipe.seed).to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = BN_MOMENTUM
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=recipe.lr, momentum=0.9, nesterov=True)
    steps = len(images) // recipe.batch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=recipe.epochs * steps)
    partial = cache_dir() / f"{recipe.stem()}.partial.pt"
    start, seconds = 0, 0.0
    if partial.is_file():
        state = torch.load(partial, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, seconds = state["epoch"], state["seconds"]
    for epoch in range(start, recipe.epochs):
        began = time.perf_counter()
        generator = torch.Generator().manual_seed(recipe.seed * 1000 + epoch)
        torch.manual_seed(recipe.seed * 1000 + epoch)        # dropout layers draw from the global RNG
        order = torch.randperm(len(images), generator=generator)
        model.train()
        bar = tqdm(range(steps), desc=f"{recipe.net} epoch {epoch + 1}/{recipe.epochs}",
                   unit="batch", disable=not progress)
        for step in bar:
            pick = order[step * recipe.batch:(step + 1) * recipe.batch]
            x = _augment(normalize(images[pick], recipe.size), generator)
            loss = torch.nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)),
                                                     labels[pick])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        seconds += time.perf_counter() - began
        output.atomic_write(str(partial), lambda f: torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "schedule": schedule.state_dict(), "epoch": epoch + 1, "seconds": seconds}, f))
    model = model.to(memory_format=torch.contiguous_format)
    top1 = accuracy(model, recipe.size)
    path = cache_dir() / f"{recipe.stem()}.pt"
    output.atomic_write(str(path), lambda f: torch.save(model.state_dict(), f))
    record = {**asdict(recipe), "top1": round(top1, 2), "train_seconds": round(seconds, 1),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": cpu_model(),
              "input": f"Fashion-MNIST 28x28 -> bilinear {recipe.size}x{recipe.size}, 3 channels, "
                       "ImageNet-normalized", "sha256": sha256(path)}
    output.write_json(str(cache_dir() / f"{recipe.stem()}.json"), record)
    partial.unlink()
    return path, record


def resolve_weights(weights: str, net: str, data: str, size: int, progress: bool = True) -> str:
    """A --weights argument as calibration takes it: 'trained' becomes the default recipe's
    checkpoint (trained first if not cached), anything else stays as given."""
    if weights != TRAINED:
        return weights
    if data != FASHION:
        raise PyiosoError(f"--weights {TRAINED} is the project's Fashion-MNIST checkpoint: with "
                          "--data DIR pass weights trained for that data")
    return str(train(Recipe(net, size=size), progress)[0])
