"""What follows a conv in a traced network: its BatchNorm and its activation.

The integer layer fuses conv -> BN -> activation (ARCHITECTURE §3); torch.fx finds that chain
in any traceable torchvision model without per-architecture code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn

from golden.errors import PyiosoError

_ACTIVATIONS = {nn.ReLU: "relu", nn.ReLU6: "relu6"}
_FUNCTIONAL = {torch.relu: "relu", nn.functional.relu: "relu", nn.functional.relu6: "relu6"}


@dataclass(frozen=True)
class Epilogue:
    """The ops fused into a conv's output stage."""

    bn: str | None          # module path of the BatchNorm that follows, if any
    activation: str         # 'none', 'relu' or 'relu6'


def trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as err:   # fx raises many types; the user needs one message
        raise PyiosoError(f"{type(model).__name__} cannot be traced with torch.fx ({err}); "
                          "pyioso supports torchvision classification models") from err


def only_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def activation_of(gm: fx.GraphModule, node: fx.Node | None) -> str:
    if node is None:
        return "none"
    if node.op == "call_module":
        return _ACTIVATIONS.get(type(gm.get_submodule(node.target)), "none")
    if node.op == "call_function":
        return _FUNCTIONAL.get(node.target, "none")
    return "none"


def epilogue(gm: fx.GraphModule, path: str) -> Epilogue:
    """BN and activation applied to the output of the conv at module ``path``."""
    node = next((n for n in gm.graph.nodes if n.op == "call_module" and n.target == path), None)
    if node is None:
        raise PyiosoError(f"module {path!r} is not called in the traced network")
    nxt = only_user(node)
    bn = None
    if nxt is not None and nxt.op == "call_module" and isinstance(
            gm.get_submodule(nxt.target), nn.BatchNorm2d | nn.BatchNorm1d):
        bn, nxt = nxt.target, only_user(nxt)
    return Epilogue(bn, activation_of(gm, nxt))
