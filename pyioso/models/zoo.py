"""Every Conv2d and Linear of a supported network, with the shapes it sees, in execution order.

Shapes come from forward hooks on a model built and run on the meta device, so listing a
network allocates no weights and computes nothing. Layers are addressed by a short alias
(``resnet50_l3``) or by ``<net>:<torchvision module path>`` (``resnet18:layer1.0.conv1``).
"""

import textwrap
from dataclasses import dataclass
from functools import lru_cache

import torch

from golden.errors import PyiosoError
from pyioso.models import tv


@dataclass(frozen=True)
class LayerInfo:
    """One conv/FC layer at a given input size (an FC layer has 1x1 spatial size and kernel)."""

    path: str  # torchvision module path, e.g. "layer2.1.conv2"
    h_in: int
    w_in: int
    c_in: int
    c_out: int
    kernel: tuple[int, int]  # (kh, kw)
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    h_out: int
    w_out: int
    kind: str  # 'conv', 'depthwise' (one input channel per conv group, groups > 1) or 'fc'

    @property
    def c_in_per_group(self) -> int:
        """Input channels each output feature accumulates over (``ic`` in the paper's App. F)."""
        return self.c_in // self.groups


# The stride-1 3x3 conv of the second block of each stage: the paper's typical ResNet layers.
_RESNET_STAGE_CONV = {"resnet18": "conv1", "resnet50": "conv2"}
_ALIASES: dict[str, tuple[str, str]] = {
    f"{net}_l{stage}": (net, f"layer{stage}.1.{conv}")
    for net, conv in _RESNET_STAGE_CONV.items()
    for stage in range(1, 5)
}


def networks() -> tuple[str, ...]:
    """The supported network names."""
    return tv.networks()


def aliases() -> dict[str, tuple[str, str]]:
    """Every layer alias, mapped to its (network, module path)."""
    return dict(_ALIASES)


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise PyiosoError(f"the input size (--size) must be a positive integer such as 224, got {size!r}")


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _describe(path: str, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> LayerInfo:
    if isinstance(module, torch.nn.Linear):
        return LayerInfo(path, 1, 1, module.in_features, module.out_features,
                         (1, 1), (1, 1), (0, 0), (1, 1), 1, 1, 1, "fc")
    depthwise = module.groups > 1 and module.in_channels == module.groups
    return LayerInfo(
        path, x.shape[2], x.shape[3], module.in_channels, module.out_channels,
        _pair(module.kernel_size), _pair(module.stride), _pair(module.padding),
        _pair(module.dilation), module.groups, y.shape[2], y.shape[3],
        "depthwise" if depthwise else "conv",
    )


@lru_cache(maxsize=None)
def _layers(net: str, size: int) -> tuple[LayerInfo, ...]:
    with torch.device("meta"):
        model = tv.build_model(net).eval()
    rows: list[LayerInfo] = []
    for path, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(
                lambda mod, args, out, path=path: rows.append(_describe(path, mod, args[0], out))
            )
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size, device="meta"))
    return tuple(rows)


def layers(net: str, size: int = 224) -> tuple[LayerInfo, ...]:
    """All Conv2d and Linear layers of ``net`` for a 1x3x``size``x``size`` input (cached)."""
    _check_size(size)
    return _layers(tv.check_network(net), size)


def resolve_layer(name: str, size: int = 224) -> tuple[str, LayerInfo]:
    """(network, layer) for an alias such as ``resnet50_l3`` or ``<net>:<module path>``."""
    if ":" in name:
        net, path = name.split(":", 1)
        net = tv.check_network(net)
    elif name.strip().lower() in _ALIASES:
        net, path = _ALIASES[name.strip().lower()]
    else:
        raise PyiosoError(
            f"unknown layer {name!r}; use an alias ({', '.join(_ALIASES)}) or <net>:<module path> "
            "such as resnet18:layer1.0.conv1 (`pyioso layers --net NET` lists the paths)"
        )
    for layer in layers(net, size):
        if layer.path == path:
            return net, layer
    raise PyiosoError(
        f"{net} has no conv/FC layer {path!r}; run `pyioso layers --net {net}` to list its module paths"
    )


def networks_help(extra: str = "") -> str:
    """The supported network names as a wrapped help paragraph."""
    return textwrap.fill(f"networks: {', '.join(networks())}{extra}", width=79, subsequent_indent="  ")
