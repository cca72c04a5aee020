"""Mixed precision: per-layer weight bits under a weight-memory budget, and per-tensor activation
bits under an activation-memory budget, chosen from a measured sensitivity.

Sensitivity: for each w-bit layer (each a-bit tensor) and each candidate width, that layer's
weights (that tensor) alone are rounded to nearest on the observer's grid at that width while
the rest of the network stays float, and the mean KL divergence of the network's class
distribution from the float one's is measured on the calibration images (the loss increase it
causes). Allocation: everything starts at the widest candidate; while the total takes more bits
than the budget allows (weights: per parameter; activations: per element the engine stores for
one image, its memory traffic), the one whose next narrower width costs the least divergence
per bit saved gives one width up (greedy, as HAQ-style searches without a learned agent;
deterministic, ties to the earlier one). The 8-bit first and last layers and the classifier's
input are outside the budgets. The engine runs any width 2..8 per layer and per tensor, so the
result exports and runs in RTL like a uniform one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from golden.errors import PyiosoError
from pyioso.calib.qnet import ActQuant, QConv, QNet
from pyioso.quant.layer import observe_coding, qparams
from pyioso.quant.uniform import fake_quantize, qrange

CANDIDATES = (2, 3, 4)      # widths a layer can take (the low-bit range where the choice matters)
SENSITIVITY_IMAGES = 256


def budget_layers(net: QNet, w_bits: int) -> dict[str, QConv]:
    """The layers the budget covers: every conv/FC at the network's w_bits (not the 8-bit edges)."""
    return {n.name: net.op(n) for n in net.nodes if isinstance(net.op(n), QConv) and net.op(n).w_bits == w_bits}


@torch.no_grad()
def sensitivity(net: QNet, images: torch.Tensor, layers: dict[str, QConv],
                candidates: tuple[int, ...] = CANDIDATES) -> dict[str, dict[int, float]]:
    """{layer: {bits: mean KL(float || that layer alone at bits)}} on `images`."""
    net.set_quant(False, False)
    net.eval()
    x = images[:SENSITIVITY_IMAGES]
    reference = F.log_softmax(net(x), dim=1)
    found = {}
    for name, conv in layers.items():
        original = conv.weight.clone()
        found[name] = {}
        for bits in candidates:
            scale, zero = qparams(original, bits, signed=True, ch_axis=0, observer=conv.fmt.observer)
            conv.weight.copy_(fake_quantize(original, scale, zero, *qrange(bits, signed=True), ch_axis=0))
            logp = F.log_softmax(net(x), dim=1)
            found[name][bits] = float(F.kl_div(logp, reference, log_target=True, reduction="batchmean"))
        conv.weight.copy_(original)
    return found


def budget_tensors(net: QNet, a_bits: int) -> dict[str, ActQuant]:
    """The tensors the activation budget covers, by the op writing them: every a-bit tensor the
    network quantizes, less the classifier's input (and the 8-bit logits)."""
    last = net.nodes[-1]
    edge = {*last.inputs, last.output}
    return {n.name: net.op(n).act for n in net.nodes
            if n.kind != "max_pool" and n.output not in edge and net.op(n).act.bits == a_bits
            and not net.op(n).act.kept_float}


@torch.no_grad()
def act_sensitivity(net: QNet, images: torch.Tensor, tensors: dict[str, ActQuant], observer: str = "mse",
                    candidates: tuple[int, ...] = CANDIDATES) -> tuple[dict[str, dict[int, float]], dict[str, int]]:
    """({tensor: {bits: mean KL(float || that tensor alone at bits)}}, {tensor: elements per image})
    on `images`: each coding observed anew at each width by `observer` on the tensor's float values."""
    net.set_quant(False, False)
    net.eval()
    x = images[:SENSITIVITY_IMAGES]
    floats = net.run({net.input_name: x}, net.nodes)
    reference = F.log_softmax(net(x), dim=1)
    outputs = {n.name: n.output for n in net.nodes}
    found, sizes = {}, {}
    for name, act in tensors.items():
        value = floats[outputs[name]]
        sizes[name] = value[0].numel()
        kept = act.coding()
        found[name] = {}
        for bits in candidates:
            act.set_coding(observe_coding(value, bits, observer))
            act.enabled = True
            found[name][bits] = float(F.kl_div(F.log_softmax(net(x), dim=1), reference, log_target=True,
                                               reduction="batchmean"))
            act.enabled = False
        act.set_coding(kept)
    return found, sizes


def allocate(sens: dict[str, dict[int, float]], sizes: dict[str, int], budget: float) -> dict[str, int]:
    """Per-layer bits with sum(size * bits) <= budget * sum(size), greedily (module docstring)."""
    widths = sorted({b for per in sens.values() for b in per})
    if not widths[0] <= budget:
        raise PyiosoError(f"a mixed-precision budget of {budget} bits on average is below the narrowest width "
                          f"{widths[0]}: give a budget in {widths[0]}..{widths[-1]}")
    bits = {name: widths[-1] for name in sens}
    limit = budget * sum(sizes.values())
    while sum(sizes[n] * b for n, b in bits.items()) > limit + 1e-9:
        def cost(name: str) -> float:
            narrower = widths[widths.index(bits[name]) - 1]
            return (sens[name][narrower] - sens[name][bits[name]]) / (sizes[name] * (bits[name] - narrower))
        name = min((n for n in bits if bits[n] > widths[0]), key=cost)
        bits[name] = widths[widths.index(bits[name]) - 1]
    return bits


def average_bits(bits: dict[str, int], sizes: dict[str, int]) -> float:
    return sum(sizes[n] * b for n, b in bits.items()) / sum(sizes[n] for n in bits)
