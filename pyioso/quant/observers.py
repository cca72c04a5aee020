"""Range observers: each one picks a clipping range from the tensors it has seen.

Every observer is an ``nn.Module`` whose ``forward(x)`` records ``x`` and returns it unchanged,
and whose ``calculate_qparams(bits, signed, ch_axis)`` returns ``(scale, zero_point)``: 0-d
tensors per tensor, vectors of length ``x.shape[ch_axis]`` per channel. The observers differ
only in how they choose the clipping range [lo, hi]; turning it into (scale, zero_point) is
:func:`pyioso.quant.uniform.qparams_from_range` for all of them (range widened to include 0; signed
grids symmetric, unsigned grids with an integer zero point).

Observers keep copies of what they see, so that the channel axis can still be chosen at
``calculate_qparams`` time and every search runs on exactly the same data: feed them weights or
calibration batches, not a dataset. All of them are deterministic.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from golden.errors import PyiosoError
from pyioso.quant.uniform import BINARY, channel_axis, fake_quantize, qparams_from_range, qrange


class Observer(nn.Module):
    """Base: records tensors. Subclasses implement :meth:`clip_data` on all observations at
    once, or override :meth:`clip_range` to see them one by one."""

    def __init__(self, ch_axis: int | None = None):
        super().__init__()
        self.ch_axis = ch_axis
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())    # clone: in-place ops downstream must not alter it
        return x

    def calculate_qparams(self, bits: int, signed: bool,
                          ch_axis: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero_point) for the b-bit grid; ``ch_axis`` defaults to the observer's."""
        return self.qparams_for_grid(*qrange(bits, signed), ch_axis=ch_axis)

    @torch.no_grad()
    def qparams_for_grid(self, qmin: int, qmax: int,
                         ch_axis: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero_point) for an explicit integer grid, e.g. a narrow or (2^b+1)-level one."""
        ch_axis = self.ch_axis if ch_axis is None else ch_axis
        lo, hi = self.clip_range(self._rows(ch_axis), qmin, qmax)
        scale, zero_point = qparams_from_range(lo, hi, qmin, qmax)
        return (scale, zero_point) if ch_axis is not None else (scale[0], zero_point[0])

    def clip_range(self, rows: list[torch.Tensor], qmin: int,
                   qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(lo, hi), each of shape (C,), from the observations as (C, n_i) rows."""
        return self.clip_data(torch.cat(rows, dim=1), qmin, qmax)

    def clip_data(self, data: torch.Tensor, qmin: int,
                  qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(lo, hi), each of shape (C,), from all observations as one (C, n) tensor."""
        raise NotImplementedError

    def _rows(self, ch_axis: int | None) -> list[torch.Tensor]:
        """Each observation as (C, n) with channels first; (1, numel) per tensor."""
        if not self.seen:
            raise PyiosoError(f"{type(self).__name__} has seen no data: call it on a weight or a "
                              "calibration batch before calculate_qparams")
        if ch_axis is None:
            return [x.reshape(1, -1) for x in self.seen]
        rows = [x.movedim(channel_axis(ch_axis, x.dim()), 0).flatten(1) for x in self.seen]
        if len({r.shape[0] for r in rows}) > 1:
            raise PyiosoError(f"observations have different sizes along ch_axis={ch_axis}: "
                              "observe tensors with one channel count per observer")
        return rows


class MinMaxObserver(Observer):
    """The observed min and max: no clipping."""

    def clip_data(self, data, qmin, qmax):
        return data.amin(dim=1), data.amax(dim=1)


class EMAMinMaxObserver(Observer):
    """Exponential moving average of each observation's min and max (Jacob et al. 2018).

    r_t = momentum * batch_t + (1 - momentum) * r_{t-1}, started at the first batch's value;
    ``momentum`` is the weight of the newest batch (the lecture's alpha, BatchNorm's momentum).
    """

    def __init__(self, momentum: float = 0.1, ch_axis: int | None = None):
        super().__init__(ch_axis)
        if not 0 < momentum <= 1:
            raise PyiosoError(f"momentum={momentum} is out of range: use 0 < momentum <= 1")
        self.momentum = momentum

    def clip_range(self, rows, qmin, qmax):
        lo, hi = rows[0].amin(dim=1), rows[0].amax(dim=1)
        for r in rows[1:]:
            lo = torch.lerp(lo, r.amin(dim=1), self.momentum)
            hi = torch.lerp(hi, r.amax(dim=1), self.momentum)
        return lo, hi


class MSEObserver(Observer):
    """Range minimizing the L_p quantization error, by BRECQ's grid search.

    Follows BRECQ's ``UniformAffineQuantizer`` 'mse' init (yhhhli/BRECQ, quant/quant_layer.py):
    candidate i in 0..steps-1 scales both ends of the observed range by (1 - shrink * i)
    (default: 80 candidates, 1% apart), scores mean |x - Q(x)|^p with p = 2.4 (the L_p norm of
    LAPQ), and keeps the first minimum. Per channel, each channel is searched on its own
    (vectorized here). Departures: the range includes 0, the zero point is clamped to the grid,
    and signed grids are symmetric.
    """

    def __init__(self, p: float = 2.4, steps: int = 80, shrink: float = 0.01,
                 ch_axis: int | None = None, max_samples: int | None = None):
        super().__init__(ch_axis)
        self.max_samples = max_samples      # score each candidate on at most this many values
        if not p > 0:
            raise PyiosoError(f"p={p} is not a norm exponent: use p > 0 (2.4 as BRECQ, 2 for MSE)")
        if steps < 1 or not 0 < shrink * max(steps - 1, 1) < 1:
            raise PyiosoError(f"steps={steps}, shrink={shrink} do not give shrinking ranges: "
                              "need steps >= 1 and 0 < shrink * (steps - 1) < 1")
        self.p, self.steps, self.shrink = p, steps, shrink

    def clip_data(self, data, qmin, qmax):
        lo0, hi0 = data.amin(dim=1), data.amax(dim=1)
        if self.max_samples and data.shape[1] > self.max_samples:
            # A fixed stride through the values (extremes kept above): same answer every run.
            data = data[:, ::-(-data.shape[1] // self.max_samples)]
        best = torch.full_like(lo0, math.inf)
        best_lo, best_hi = lo0.clone(), hi0.clone()
        work = torch.empty_like(data)       # one buffer for every candidate's error
        for i in range(self.steps):
            lo, hi = lo0 * (1 - self.shrink * i), hi0 * (1 - self.shrink * i)
            scale, zero_point = qparams_from_range(lo, hi, qmin, qmax)
            err = self._error(data, scale, zero_point, qmin, qmax, work).abs_().pow_(self.p).mean(dim=1)
            better = err < best
            best = torch.where(better, err, best)
            best_lo, best_hi = torch.where(better, lo, best_lo), torch.where(better, hi, best_hi)
        return best_lo, best_hi

    @staticmethod
    def _error(data, scale, zero_point, qmin, qmax, out) -> torch.Tensor:
        """fake_quantize(data) - data per row, written into `out`, without its per-call checks
        (the search calls it 80 times per tensor); integer clamp bounds make clamp-then-round =
        round-then-clamp. In place: the same values as the out-of-place expression, without
        allocating a tensor per operation."""
        if (qmin, qmax) == BINARY:
            return torch.sub(fake_quantize(data, scale, zero_point, qmin, qmax, ch_axis=0), data, out=out)
        s, z = scale[:, None], zero_point[:, None]
        return torch.div(data, s, out=out).round_().add_(z).clamp_(qmin, qmax).sub_(z).mul_(s).sub_(data)


class KLObserver(Observer):
    """Threshold minimizing KL(P || Q), TensorRT's entropy calibration (Migacz 2017).

    A ``bins``-bin histogram of |x| over [0, max|x|]; for each candidate i (qmax + 1 .. bins kept
    bins) P is the first i bins with the clipped mass added to the last, Q merges those i bins
    into qmax + 1 levels (TensorRT: 128 for 8 bits) and spreads each level's count evenly over
    its bins where P is nonzero. The threshold T is the upper edge of the best i kept bins
    (MXNet's variant of TensorRT's (m + 0.5) * width); the range is [max(min, -T), min(max, T)].
    """

    def __init__(self, bins: int = 2048, ch_axis: int | None = None):
        super().__init__(ch_axis)
        self.bins = bins

    def clip_data(self, data, qmin, qmax):
        levels = qmax + 1
        if self.bins < levels:
            raise PyiosoError(f"bins={self.bins} is fewer than the {levels} quantization levels: "
                              f"use bins >= {levels} (2048 as TensorRT)")
        thr = torch.stack([self._threshold(row.abs(), levels) for row in data])
        return torch.maximum(data.amin(dim=1), -thr), torch.minimum(data.amax(dim=1), thr)

    def _threshold(self, mag: torch.Tensor, levels: int) -> torch.Tensor:
        width = mag.max() / self.bins
        if width == 0:
            return width
        hist = torch.bincount((mag / width).long().clamp(max=self.bins - 1), minlength=self.bins)
        return width * (levels + int(_kl_divergences(hist.to(torch.float64), levels).argmin()))


def _kl_divergences(hist: torch.Tensor, levels: int) -> torch.Tensor:
    """KL(P || Q) for every number of kept bins i = levels..len(hist), all at once.

    Prefix sums over the histogram give, for each i, the mass and nonzero-bin count of every
    level's run of bins [ceil(k i / levels), ceil((k + 1) i / levels)); with p = P / S and
    q = Q / sum(h[:i]), KL = (sum P log P - sum_levels P_level log(Q_level / count)) / S
    + log(sum(h[:i]) / S). Infinite where a level has P mass but no Q mass.
    """
    zero = hist.new_zeros(1)
    mass = torch.cat([zero, hist.cumsum(0)])                       # mass[j] = sum(h[:j])
    nonzero = torch.cat([zero, (hist > 0).to(hist.dtype).cumsum(0)])
    plogp = torch.cat([zero, torch.special.xlogy(hist, hist).cumsum(0)])
    total = mass[-1]
    kept = torch.arange(levels, len(hist) + 1, device=hist.device)
    last = total - mass[kept - 1]                                   # P's last bin: h[i-1] + clipped
    k = torch.arange(levels + 1, device=hist.device)
    edges = (k * kept[:, None] + levels - 1) // levels              # (K, levels + 1)
    q_mass = mass[edges].diff(dim=1)
    count = nonzero[edges].diff(dim=1)
    count[:, -1] += (last > 0).to(count.dtype) - (hist[kept - 1] > 0).to(count.dtype)
    p_mass = q_mass.clone()
    p_mass[:, -1] += total - mass[kept]
    cross = torch.special.xlogy(p_mass, q_mass / count.clamp_min(1)).sum(dim=1)
    entropy = plogp[kept - 1] + torch.special.xlogy(last, last)
    kl = (entropy - cross) / total + torch.log(mass[kept] / total)
    return torch.where(((p_mass > 0) & (q_mass == 0)).any(dim=1), math.inf, kl)


class PercentileObserver(Observer):
    """Range between the (100 - pct)-th and pct-th percentiles (nearest rank), default 99.99."""

    def __init__(self, percentile: float = 99.99, ch_axis: int | None = None):
        super().__init__(ch_axis)
        if not 50 < percentile <= 100:
            raise PyiosoError(f"percentile={percentile} is out of range: "
                              "use 50 < percentile <= 100")
        self.percentile = percentile

    def clip_data(self, data, qmin, qmax):
        k = max(1, math.ceil(self.percentile / 100 * data.shape[1]))
        return -(-data).kthvalue(k, dim=1).values, data.kthvalue(k, dim=1).values


# The clipping methods by name (pyioso calibrate --observer, --weight-observer).
OBSERVERS = {"minmax": MinMaxObserver, "ema": EMAMinMaxObserver, "mse": MSEObserver,
             "kl": KLObserver, "percentile": PercentileObserver}


def make_observer(name: str, ch_axis: int | None = None,
                  max_samples: int | None = None) -> Observer:
    """The observer called `name` with its defaults (MSE scores at most `max_samples` values)."""
    if name not in OBSERVERS:
        raise PyiosoError(f"observer {name!r} is unknown: use one of {', '.join(OBSERVERS)}")
    if name == "mse":
        return MSEObserver(ch_axis=ch_axis, max_samples=max_samples)
    return OBSERVERS[name](ch_axis=ch_axis)
