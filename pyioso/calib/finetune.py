"""Quantization-aware training after a calibration (`pyioso finetune`): the calibrated fake-quant
network trained end to end on labelled images with the straight-through estimator (STE).

Every w-bit layer's weight becomes a latent float weight that starts at its calibrated value
s * code, so the first step computes exactly the calibrated network. The forward pass rounds it
to the layer's grid (to nearest, clamped to its codes; ternary layers to -1..1, binary ones to the
sign), the backward pass lets the gradient through inside the grid, and the scale s learns as
LSQ's step (Esser et al. 2020) through the same formula. The activation steps (ActQuant already
computes LSQ's gradient), OSO's scale and offset and the biases learn too. What the hardware fixes
stays fixed: the ISG groups and scales, every coding's bits and zero point, the 8-bit first and
last layers. TTQ layers (`--weight-levels ttq`) learn their latent weight and their positive and
negative scales with TTQ's own gradients instead (pyioso.quant.levels.TtqRounding) and stay
fake-quant. At the end each latent weight is frozen to its codes, and steps that LSQ parked on a
rounding tie are moved off it (pyioso.calib.ties), so the network exports and runs bit-exact like
any calibration.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from golden.errors import PyiosoError
from pyioso.calib import ties
from pyioso.calib.calibrate import STEP_FLOOR
from pyioso.calib.qnet import QConv, QNet
from pyioso.quant.levels import TernaryRounding, TtqRounding
from pyioso.quant.rounding import NearestRounding
from pyioso.quant.uniform import qrange, safe_scale


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 1
    lr: float = 1e-5            # Adam, every learned tensor; cosine to 0 over the run
    batch: int = 64
    images: int | None = None   # training images (None: the whole train split)
    seed: int = 0

    def __post_init__(self):
        for ok, why in ((self.epochs >= 1, "epochs must be >= 1"), (self.lr > 0, "lr must be > 0"),
                        (self.batch >= 1, "batch must be >= 1"),
                        (self.images is None or self.images >= 1, "images must be >= 1")):
            if not ok:
                raise PyiosoError(f"invalid finetune setting: {why}")

    def to_json(self) -> dict:
        return asdict(self)


class SteWeight(nn.Module):
    """A latent weight and its per-channel scale, rounded to the layer's codes with the STE."""

    def __init__(self, conv: QConv):
        super().__init__()
        codes = conv.weight_codes().to(conv.weight.dtype)
        scale = conv.w_scale.detach().clone()
        self.levels, self.bits = conv.levels, conv.w_bits
        self.qmin, self.qmax = (-1, 1) if conv.levels != "uniform" else qrange(conv.w_bits, signed=True)
        self.weight = nn.Parameter(codes * scale.view(-1, *[1] * (codes.dim() - 1)))
        self.scale = nn.Parameter(scale)

    def _step(self) -> torch.Tensor:
        return safe_scale(self.scale).view(-1, *[1] * (self.weight.dim() - 1))

    def _codes(self, v: torch.Tensor) -> torch.Tensor:
        v = v.clamp(self.qmin, self.qmax)
        hard = torch.where(v >= 0, 1.0, -1.0) if self.levels == "binary" else torch.round(v)
        return v + (hard - v).detach()

    def forward(self) -> torch.Tensor:
        step = self._step()
        return self._codes(self.weight / step) * step

    def codes(self) -> torch.Tensor:
        return self._codes(self.weight / self._step()).detach()

    def frozen(self) -> nn.Module:
        """The fixed rounding that gives these codes from the latent weight (what export reads)."""
        w, s = self.weight.detach().clone(), safe_scale(self.scale.detach()).clone()
        if self.levels == "ternary":        # TWN's rule at threshold s/2 = round to -1..1
            return TernaryRounding(w, s, s / 2)
        bits = 1 if self.levels == "binary" else self.bits
        return NearestRounding(w, s, torch.zeros_like(s), bits, signed=True, ch_axis=0)


def learned(net: QNet) -> tuple[list[SteWeight], list[nn.Parameter], list[torch.Tensor]]:
    """Swap every conv's rounding but TTQ's for an SteWeight; (those, activation steps, other tensors)."""
    for p in net.parameters():
        p.requires_grad_(False)
    weights, steps, others = [], [], []
    for module in net.ops.values():
        if isinstance(module, QConv):
            if isinstance(module.rounding, TtqRounding):        # TTQ learns through its own gradients
                others += [module.rounding.weight, module.rounding.scale, module.rounding.negative]
            else:
                module.rounding = SteWeight(module)
                weights.append(module.rounding)
            others.append(module.bias)
            if module.oso:
                others += [module.oso_scale, module.oso_offset]
        act = getattr(module, "act", None)
        if act is not None and not act.kept_float:
            steps.append(act.scale)
    for t in [p for w in weights for p in w.parameters()] + steps + others:
        t.requires_grad_(True)
    return weights, steps, others


def freeze(net: QNet) -> None:
    """Fixed roundings from the trained latent weights; the QConvs' own weight and scale follow."""
    for module in net.ops.values():
        if isinstance(module, QConv) and isinstance(module.rounding, SteWeight):
            rounding = module.rounding.frozen()
            module.weight.copy_(rounding.weight)
            module.w_scale.copy_(rounding.scale.flatten())
            module.rounding = rounding
    for p in [*net.parameters(), *net.buffers()]:
        p.requires_grad_(False)


def finetune(net: QNet, images: torch.Tensor, labels: torch.Tensor, config: FinetuneConfig,
             progress: bool = True) -> list[dict]:
    """Train `net` (calibrated, fully quantized) on (images, labels); per epoch its mean loss
    and training top-1. The network ends frozen (fixed roundings) with its activation steps off
    rounding ties (pyioso.calib.ties; the last epoch records the moves), ready to export."""
    if not net.input_quant.enabled:
        raise PyiosoError("finetune trains a fully quantized network: calibrate with activation bits 2..8 first")
    weights, steps, others = learned(net)
    floors = [s.detach() * STEP_FLOOR for s in steps]
    params = [p for w in weights for p in w.parameters()] + steps + others
    optimizer = torch.optim.Adam(params, lr=config.lr)
    total = config.epochs * math.ceil(len(images) / config.batch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 0.5 * (1 + math.cos(math.pi * t / total)))
    gen = torch.Generator().manual_seed(config.seed)
    history = []
    net.train()
    with tqdm(total=total, desc="finetune", unit="step", disable=not progress, mininterval=1.0) as bar:
        for epoch in range(config.epochs):
            order = torch.randperm(len(images), generator=gen)
            loss_sum, hits = 0.0, 0
            for start in range(0, len(images), config.batch):
                idx = order[start:start + config.batch]
                logits = net(images[idx])
                loss = F.cross_entropy(logits, labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                with torch.no_grad():
                    for s, floor in zip(steps, floors):     # steps stay positive (as in calibration)
                        s.clamp_(min=floor)
                value = float(loss.detach())
                loss_sum += value * len(idx)
                hits += int((logits.argmax(1) == labels[idx]).sum())
                bar.update()
                bar.set_postfix(epoch=epoch + 1, loss=f"{value:.3f}")
            history.append({"epoch": epoch + 1, "loss": loss_sum / len(images),
                            "train_top1": 100.0 * hits / len(images)})
    freeze(net)
    history[-1]["tie_nudges"] = ties.settle_ties(net, images[:ties.IMAGES])
    return history
