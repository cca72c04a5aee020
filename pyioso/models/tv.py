"""The one place that imports torchvision, and the builders of the networks pyioso supports.

torchvision 0.28.0 from PyPI is a CUDA build: on our CPU torch its C++ extension does not
load, and its Python side then fails at import while registering fake kernels for
``torchvision::nms``/``qnms``. Defining those two operator schemas ourselves first lets the
model definitions import; the C++ ops themselves (nms, roi_align, image io) stay unusable.
pyioso/startup.py does the same before a plain `import torchvision` anywhere in the venv.
"""

import importlib
import inspect
import sys
from collections.abc import Callable
from types import ModuleType

import torch

from golden.errors import PyiosoError

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
)
# Kept alive for the whole process: dropping the Library object would unregister the schemas.
_library: torch.library.Library | None = None


def define_schemas() -> None:
    """Define the two operator schemas torchvision's import needs (once, before it)."""
    global _library
    if "torchvision" not in sys.modules and _library is None and not hasattr(torch.ops.torchvision, "nms"):
        _library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            _library.define(schema)


def torchvision() -> ModuleType:
    """Import torchvision (once) and return it; safe to call again or after another import."""
    define_schemas()
    try:
        import torchvision as module
    except ImportError as err:
        raise PyiosoError(
            f"torchvision cannot be imported ({err}); install it with "
            "`.venv/bin/pip install --no-deps torchvision==0.28.0` (see requirements-nodeps.txt)"
        ) from err
    return module


def _torchvision_builder(name: str) -> Callable[[int], torch.nn.Module]:
    return lambda num_classes: torchvision().models.get_model(name, weights=None, num_classes=num_classes)


def _regnet_x(depth: int, w_0: int, w_a: float, w_m: float, group_width: int) -> Callable[[int], torch.nn.Module]:
    """A RegNetX from its pycls design parameters (torchvision has no RegNetX-600MF builder)."""

    def build(num_classes: int) -> torch.nn.Module:
        regnet = torchvision().models.regnet
        # The widths are computed with tensors: keep them off a surrounding meta device.
        with torch.device("cpu"):
            params = regnet.BlockParams.from_init_params(
                depth=depth, w_0=w_0, w_a=w_a, w_m=w_m, group_width=group_width
            )
        return regnet.RegNet(params, num_classes=num_classes)

    return build


def _mnasnet2_0(num_classes: int) -> torch.nn.Module:
    """MnasNet with depth multiplier 2.0 (the paper's MnasNet-2.0); torchvision stops at 1.3."""
    return torchvision().models.MNASNet(alpha=2.0, num_classes=num_classes)


_BUILDERS: dict[str, Callable[[int], torch.nn.Module]] = {
    "resnet18": _torchvision_builder("resnet18"),
    "resnet50": _torchvision_builder("resnet50"),
    "mobilenet_v2": _torchvision_builder("mobilenet_v2"),
    # pycls RegNetX-600MF / -3.2GF, the paper's RegNet-600MF / -3.2GF.
    "regnet_x_600mf": _regnet_x(depth=16, w_0=48, w_a=36.97, w_m=2.24, group_width=24),
    "regnet_x_3_2gf": _regnet_x(depth=25, w_0=88, w_a=26.31, w_m=2.25, group_width=48),
    "mnasnet1_0": _torchvision_builder("mnasnet1_0"),
    "mnasnet2_0": _mnasnet2_0,
}


def networks() -> tuple[str, ...]:
    """Names accepted by build_model (and by every --net option), in a stable order."""
    return tuple(_BUILDERS)


def check_network(name: str) -> str:
    """Return the canonical network name: a supported one in lower case, or a user's network
    as `module.path:factory` (importable, the factory callable); else raise PyiosoError
    listing the valid ones."""
    if ":" in name:
        _factory(name)
        return name.strip()
    key = name.strip().lower()
    if key not in _BUILDERS:
        raise PyiosoError(f"unknown network {name!r}; use one of: {', '.join(networks())}, or "
                          "your own as module.path:factory")
    return key


def _factory(reference: str) -> Callable[[int], torch.nn.Module]:
    """The builder of a user's network `module.path:factory`: the factory is called with
    `num_classes` when it takes that argument, else with none."""
    module_name, _, attr = reference.strip().partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise PyiosoError(f"network {reference!r}: module {module_name!r} cannot be imported ({err}): "
                          "run from its directory or put it on PYTHONPATH") from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise PyiosoError(f"network {reference!r}: {module_name} has no callable {attr!r}")
    takes_classes = "num_classes" in inspect.signature(factory).parameters
    return lambda num_classes: factory(num_classes=num_classes) if takes_classes else factory()


def build_model(name: str, num_classes: int = 1000, seed: int | None = None) -> torch.nn.Module:
    """A freshly initialised (untrained) classification network.

    With ``seed`` the initialisation is reproducible and the global RNG state is left as it was.
    Build under ``with torch.device("meta"):`` to get shapes without allocating weights.
    """
    name = check_network(name)
    builder = _factory(name) if ":" in name else _BUILDERS[name]
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise PyiosoError(f"num_classes must be a positive integer, got {num_classes!r}")
    if seed is None:
        return builder(num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(num_classes)

