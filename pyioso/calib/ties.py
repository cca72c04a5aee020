"""Activation steps moved off rounding ties, so that the engine rounds as fake-quant does.

Fake-quant rounds x / s half to even in float32; the engine rounds its fixed-point product half
up (ARCHITECTURE §3). A value within the two computations' errors (about 1e-6 codes) of a
half-integer can round either way. Spread over the grid such values are rare, but LSQ's step
gradient changes sign across a tie, so a long QAT parks a step where a value that recurs
thousands of times (a sparse depthwise input's few taps) sits on one. Measured on mobilenet_v2
W2A4 after one epoch: every differing code of the isolated layers within 1e-6 of a tie, 118 of
125 exactly on one, amplified to 19% of a later layer's codes. Scaling such a step by at most
0.1% moves that mass clear of the tie; the network's other codes barely move.
"""

from __future__ import annotations

import math

import torch

from pyioso.calib.qnet import ActQuant, QNet

TIE_BAND = 2.0 ** -16       # codes: a value closer than this to a half-integer is on a tie
NUDGES = tuple(sign * m for m in (1e-5, 3e-5, 1e-4, 3e-4, 1e-3) for sign in (1, -1))  # relative step changes
IMAGES = 1024               # the first this many calibration or training images are checked
PASSES = 3                  # a nudge changes downstream values: measure again, at most this often


def on_ties(v: torch.Tensor) -> int:
    """How many of the values x / s (codes relative to the zero point) lie on a rounding tie."""
    return int(((v - v.floor() - 0.5).abs() < TIE_BAND).sum())


def best_nudge(v: torch.Tensor) -> float:
    """The relative step change that clears the ties of v, or 0 when none clears more than the
    count a smooth spread of values leaves in the band anyway (a few standard deviations)."""
    base = on_ties(v)
    count, nudge = min((on_ties(v / (1 + d)), abs(d), d) for d in NUDGES)[::2]
    return nudge if base - count > 4 * math.sqrt(base) + 8 else 0.0


def _near_ties(net: QNet, images: torch.Tensor, batch: int) -> dict[ActQuant, torch.Tensor]:
    """Per activation coding, its unclamped values x / s that any nudge could move onto or off
    a tie (the rest cannot change the count)."""
    reach = max(abs(d) for d in NUDGES)
    kept: dict[ActQuant, list[torch.Tensor]] = {}

    def record(act: ActQuant, args: tuple) -> None:
        lo, hi = act.bounds()
        v = (args[0] / act.scale).flatten()
        v = v[(v > lo - act.zero_point - 1) & (v < hi - act.zero_point + 1)]
        kept.setdefault(act, []).append(v[(v - v.floor() - 0.5).abs() < TIE_BAND + reach * v.abs()])

    acts = [m for m in net.modules() if isinstance(m, ActQuant) and m.enabled and not m.kept_float]
    hooks = [act.register_forward_pre_hook(record) for act in acts if act is not net.input_quant]
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                net(images[start:start + batch])
    finally:
        for hook in hooks:
            hook.remove()
    return {act: torch.cat(values) for act, values in kept.items()}


def settle_ties(net: QNet, images: torch.Tensor, batch: int = 64) -> dict[str, float]:
    """Nudge every activation step whose values on `images` crowd a rounding tie; the relative
    change per tensor name (empty when no step needed one). The network is left in eval mode."""
    net.eval()
    names = {id(net.op(node).act): node.output for node in net.nodes if hasattr(net.op(node), "act")}
    nudged: dict[str, float] = {}
    for _ in range(PASSES):
        moves = {act: best_nudge(v) for act, v in _near_ties(net, images, batch).items()}
        moves = {act: d for act, d in moves.items() if d}
        if not moves:
            break
        with torch.no_grad():
            for act, d in moves.items():
                act.scale.mul_(1 + d)
                name = names[id(act)]
                nudged[name] = (1 + nudged.get(name, 0.0)) * (1 + d) - 1
    return nudged
