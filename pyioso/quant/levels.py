"""Ternary, binary and k-means weights: the lecture's non-uniform and extreme weight quantizers.

Ternary (TWN, Li et al. 2016): threshold Delta = 0.7 mean|W|, codes sign(W) where |W| > Delta and
0 elsewhere, scale alpha = the mean |W| over the kept weights (the L2-optimal alpha for that
mask). Binary (XNOR-Net, Rastegari et al. 2016): codes sign(W), alpha = mean|W|. Both code sets
lie inside the signed 2-bit grid -2..1, so the integer engine runs them as 2-bit weights with
alpha as the channel's weight scale: nothing of the hardware changes. TTQ (trained ternary
quantization, Zhu et al. 2017) keeps TWN's codes but learns a positive and a negative scale per
channel in QAT (pyioso finetune); with two scales a weight is no longer a code times one channel
scale, so the engine cannot run it and it stays fake-quant. K-means (Deep Compression,
Han et al. 2016) is a software baseline only: 2^b float centroids per layer, the weights stored as
b-bit indices into them; the products are float, so no integer network computes it.
"""

from __future__ import annotations

import torch

from pyioso.quant.rounding import NearestRounding, _WeightRounding
from pyioso.quant.uniform import safe_scale

LEVELS = ("uniform", "ternary", "binary", "ttq", "kmeans")
INTEGER_LEVELS = ("uniform", "ternary", "binary")     # the ones an integer network can hold
KMEANS_ITERS = 50       # Lloyd iterations (from a linear initialization, Deep Compression's best)
STORAGE_BITS = 2        # the signed grid the ternary and binary code sets are stored on
TWN_THRESHOLD = 0.7     # Delta / mean|W| (TWN's approximation for Gaussian-like weights)


def _per_channel(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs().flatten(1)


def ternary_qparams(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, Delta) per output channel (dim 0); a channel of zeros gets alpha = eps, codes 0."""
    mag = _per_channel(weight)
    threshold = TWN_THRESHOLD * mag.mean(dim=1)
    kept = mag > threshold[:, None]
    alpha = (mag * kept).sum(dim=1) / kept.sum(dim=1).clamp_min(1)
    return safe_scale(alpha), threshold


def binary_scale(weight: torch.Tensor) -> torch.Tensor:
    """alpha = mean|W| per output channel (dim 0)."""
    return safe_scale(_per_channel(weight).mean(dim=1))


class TernaryRounding(_WeightRounding):
    """TWN's codes: sign(W) where |W| exceeds the channel's threshold, else 0 (fixed, not learned)."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, threshold: torch.Tensor):
        super().__init__(weight, scale, torch.zeros_like(scale), STORAGE_BITS, signed=True, ch_axis=0)
        shape = (-1,) + (1,) * (weight.dim() - 1)
        self.register_buffer("threshold", threshold.reshape(shape).clone())

    def codes(self) -> torch.Tensor:
        return torch.sign(self.weight) * (self.weight.abs() > self.threshold).to(self.weight.dtype)


class TtqRounding(_WeightRounding):
    """TTQ: TWN's codes (its threshold recomputed from the latent weight) times a positive scale
    W_p (`scale`) or a negative one W_n (`negative`) per channel, both starting at TWN's alpha.
    With the latent weight, W_p and W_n requiring grad (pyioso finetune) the gradients are TTQ's:
    W_p gets the sum of its weights' gradients, W_n minus the sum of its, the latent weight its
    gradient times W_p, 1 or W_n for a positive, zero or negative code."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor):
        super().__init__(weight, scale, torch.zeros_like(scale), STORAGE_BITS, signed=True, ch_axis=0)
        self.register_buffer("negative", self.scale.clone())

    def codes(self) -> torch.Tensor:
        w = self.weight.detach()
        threshold = TWN_THRESHOLD * _per_channel(w).mean(dim=1).view(-1, *[1] * (w.dim() - 1))
        return torch.sign(w) * (w.abs() > threshold).to(w.dtype)

    def forward(self) -> torch.Tensor:
        codes = self.codes()
        positive, negative = (codes > 0).to(codes.dtype), (codes < 0).to(codes.dtype)
        factor = (self.scale * positive + self.negative * negative + (1 - positive - negative)).detach()
        latent = self.weight * factor
        return self.scale * positive - self.negative * negative + latent - latent.detach()


def kmeans_codebook(weight: torch.Tensor, bits: int, iters: int = KMEANS_ITERS) -> tuple[torch.Tensor, torch.Tensor]:
    """(2^bits centroids, ascending, the index of each weight's nearest), by Lloyd's algorithm in
    1-D from centroids spread linearly over [min, max]; deterministic. An empty cluster keeps its
    centroid."""
    w = weight.detach().flatten().to(torch.float64)
    centroids = torch.linspace(float(w.min()), float(w.max()), 2 ** bits, dtype=torch.float64)
    for _ in range(iters):
        index = torch.bucketize(w, (centroids[1:] + centroids[:-1]) / 2)
        count = torch.bincount(index, minlength=len(centroids)).to(w.dtype)
        total = torch.zeros_like(centroids).index_add_(0, index, w)
        moved = torch.where(count > 0, total / count.clamp_min(1), centroids)
        if torch.equal(moved, centroids):
            break
        centroids = moved.sort().values
    index = torch.bucketize(w, (centroids[1:] + centroids[:-1]) / 2)
    return centroids.to(weight.dtype), index.view(weight.shape)


class KMeansRounding(_WeightRounding):
    """Each weight replaced by its nearest centroid of the layer's codebook; codes are indices."""

    def __init__(self, weight: torch.Tensor, bits: int):
        ones = torch.ones(weight.shape[0], dtype=weight.dtype)
        super().__init__(weight, ones, torch.zeros_like(ones), bits, signed=False, ch_axis=0)
        codebook, index = kmeans_codebook(weight, bits)
        self.register_buffer("codebook", codebook)
        self.register_buffer("index", index)

    def codes(self) -> torch.Tensor:
        return self.index.to(self.weight.dtype)

    def forward(self) -> torch.Tensor:
        return self.codebook[self.index]


def fixed_rounding(levels: str, weight: torch.Tensor, bits: int = STORAGE_BITS) -> tuple[_WeightRounding, torch.Tensor]:
    """(the rounding of `levels` (not "uniform") for a [C_out, ...] weight of `bits`, its scale)."""
    if levels == "kmeans":
        rounding = KMeansRounding(weight, bits)
        return rounding, rounding.scale.flatten()
    if levels in ("ternary", "ttq"):
        scale, threshold = ternary_qparams(weight)
        return (TernaryRounding(weight, scale, threshold) if levels == "ternary" else TtqRounding(weight, scale)), scale
    scale = binary_scale(weight)
    return NearestRounding(weight, scale, torch.zeros_like(scale), 1, signed=True, ch_axis=0), scale
