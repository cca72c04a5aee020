"""The float network to calibrate: a torchvision architecture with the user's weights."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from golden.errors import PyiosoError
from pyioso.models import tv

RANDOM = "random"


def load_model(net: str, weights: str, num_classes: int, seed: int = 0) -> torch.nn.Module:
    """`net` with the state_dict (or checkpoint holding one under 'state_dict' / 'model') at
    `weights`, or seeded random weights for 'random' (smoke runs and benchmarks). Eval mode."""
    model = tv.build_model(net, num_classes=num_classes, seed=seed)
    if weights == RANDOM:
        return model.eval()
    path = Path(weights)
    if not path.is_file():
        raise PyiosoError(f"weights file {path} does not exist: pass a state_dict saved with "
                          f"torch.save, or --weights {RANDOM} for an untrained network")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:    # torch.load raises anything from EOFError to UnpicklingError
        raise PyiosoError(f"{path} is not a readable torch checkpoint ({type(err).__name__}: "
                          f"{err}): pass a file written by torch.save(model.state_dict())") from err
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("model", state))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PyiosoError(f"{path} holds no state_dict: save model.state_dict()")
    own = model.state_dict()
    state = _unwrapped(state, own._metadata)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        detail = "; ".join(f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                           for what, keys in (("missing", missing), ("unexpected", unexpected),
                                              ("wrong shape", sorted(shapes))) if keys)
        raise PyiosoError(f"{path} does not match {net} with {num_classes} classes ({detail}): "
                          "pass weights of that architecture and class count")
    model.load_state_dict(state)
    return model.eval()


def _unwrapped(state: dict, own_metadata: dict) -> OrderedDict:
    """The state_dict without DataParallel's 'module.' prefix, keeping the per-module versions
    (`_metadata`) that some modules check when loading (torchvision's MnasNet refuses a state
    without one); a state saved without them gets the model's own."""
    def strip(key: str) -> str:
        return "" if key == "module" else key.removeprefix("module.")

    metadata = getattr(state, "_metadata", None)
    unwrapped = OrderedDict((strip(k), v) for k, v in state.items())
    unwrapped._metadata = own_metadata if metadata is None else OrderedDict(
        (strip(k), v) for k, v in metadata.items())
    return unwrapped
