"""The `rtl` backend of pyioso.load(...).run(images, backend="rtl"): every op of an integer
network on the engine's RTL under Verilator, one image at a time (sim.chain), each op fed the
engine's own outputs of the ops before it. Registered as an entry point (pyproject.toml), so the
library finds it without importing sim/."""

from __future__ import annotations

import torch
from tqdm import tqdm

from hw.params import EngineParams
from pyioso.integer import intnet
from sim import chain, layer


def run(net: intnet.IntNet, codes: torch.Tensor) -> torch.Tensor:
    """Logit codes [N, classes] of input codes [N, H, W, C], from the engine."""
    params = EngineParams()
    chain.check_network(net, codes[:1], params)         # the engine's refusals before any build
    sim = layer.engine_simulator(params)
    logits = []
    with tqdm(total=len(codes) * len(net.steps), desc="rtl", unit="op") as bar:
        for i in range(len(codes)):
            logits.append(chain.run_image(net, codes[i:i + 1], sim, bar)[0])
    return torch.stack(logits)
