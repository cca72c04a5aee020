"""Element-wise kernels fused by torch.compile (Inductor), with the same functions run eagerly
where Inductor cannot build.

Reconstruction runs thousands of steps of small element-wise chains (AdaRound's soft weight,
LSQ's fake-quantization); eagerly each op is a pass over memory, and on this torch a bool mask
read by ``torch.where`` costs more than the convolution it feeds (docs/CALIBRATION.md, Speed).
Fused, each operand is read once and masks stay in registers.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import torch

log = logging.getLogger(__name__)


def fused(eager: dict[str, Callable], warm_up: Callable[[dict], None], device: str, what: str) -> dict:
    """`eager`'s functions compiled (C++ on the CPU, Triton on a GPU), built now by `warm_up` (which
    calls each on the inputs reconstruction gives it) so that a missing compiler shows before any
    timed loop. With PYIOSO_COMPILE=0, or where the build fails, the functions themselves: equal up
    to float rounding, only slower."""
    if os.environ.get("PYIOSO_COMPILE", "1") == "0":
        return eager
    compiled = {k: torch.compile(f, dynamic=True, fullgraph=True) for k, f in eager.items()}
    try:
        with torch.no_grad():
            warm_up(compiled)
    except Exception as err:  # noqa: BLE001 - any build failure means: run eagerly
        log.warning("torch.compile is unavailable on %s (%s: %s); %s runs eagerly (slower)",
                    device, type(err).__name__, (str(err).splitlines() or [""])[0], what)
        return eager
    return compiled
