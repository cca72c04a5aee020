"""Integer-operation cost of conv/FC layers with and without ISG (paper Sec. 4.4, App. F).

Counting rule: each output feature of a layer takes ``ic*fx*fy`` multiplications and
``ic*fx*fy - 1`` additions, ``ic`` being the input channels per conv group; a layer has
``c_out*h_out*w_out`` output features. ISG (input channel-wise scale grouping) adds, per output
feature, one shift and one addition for every group whose scale is not 1: with ``g`` groups
of scales (1, 1-2^-n, 1+2^-n, ...) that is ``2*(g-1)`` operations. A layer with one input
channel per conv group (depthwise) has nothing to group, so it gets no ISG operations.
Every conv/FC is counted, including those the paper's Tables 12/13 leave out (ResNet stem
and downsample convs, MobileNetV2 projection convs), so our totals exceed the paper's.
"""

from dataclasses import dataclass

from golden.errors import PyiosoError
from pyioso.models import tv, zoo


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's Table 5 (giga integer operations)."""

    label: str
    baseline: float
    isg: float
    total: float
    ratio_percent: float


# The paper's Table 5 as printed, keyed by our network names (its MnasNet-2.0 is mnasnet2_0).
# Two printed rows do not add up: MobileNetV2 0.338 + 0.014 vs 0.345, RegNet-600MF
# 0.777 + 0.010 vs 0.782.
PAPER_TABLE5: dict[str, PaperRow] = {
    "resnet18": PaperRow("ResNet-18", 3.005, 0.006, 3.011, 0.20),
    "resnet50": PaperRow("ResNet-50", 5.576, 0.013, 5.589, 0.24),
    "mobilenet_v2": PaperRow("MobileNetV2", 0.338, 0.014, 0.345, 4.03),
    "regnet_x_600mf": PaperRow("RegNet-600MF", 0.777, 0.010, 0.782, 1.28),
    "regnet_x_3_2gf": PaperRow("RegNet-3.2GF", 4.442, 0.030, 4.472, 0.68),
    "mnasnet2_0": PaperRow("MnasNet-2.0", 2.217, 0.025, 2.242, 1.11),
}


class _Overhead:
    """Totals shared by a layer's and a network's counts (both have `ops` and `isg_ops`)."""

    @property
    def total(self) -> int:
        return self.ops + self.isg_ops

    @property
    def ratio(self) -> float:
        """ISG overhead as a fraction of the baseline."""
        return self.isg_ops / self.ops if self.ops else 0.0


@dataclass(frozen=True)
class LayerCost(_Overhead):
    """Operation counts of one layer; ``ops`` is the baseline, ``isg_ops`` what ISG adds."""

    layer: zoo.LayerInfo
    outputs: int
    muls: int  # per output feature
    adds: int  # per output feature
    ops: int
    isg_ops: int


@dataclass(frozen=True)
class NetworkCost(_Overhead):
    """Per-layer costs of a network and their sums."""

    net: str
    size: int
    groups: int
    layers: tuple[LayerCost, ...]

    @property
    def ops(self) -> int:
        return sum(row.ops for row in self.layers)

    @property
    def isg_ops(self) -> int:
        return sum(row.isg_ops for row in self.layers)


def _check_groups(groups: int) -> None:
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise PyiosoError(
            f"the number of ISG groups (--groups) must be an integer >= 1 (1 = no ISG, the paper uses 3), got {groups!r}"
        )


def isg_ops_per_output(groups: int) -> int:
    """One shift and one addition for each of the ``groups - 1`` groups whose scale is not 1."""
    _check_groups(groups)
    return 2 * (groups - 1)


def layer_cost(layer: zoo.LayerInfo, groups: int = 3) -> LayerCost:
    """Cost of one layer with ``groups`` ISG groups (``groups=1``: no ISG)."""
    per_output_isg = isg_ops_per_output(groups)
    outputs = layer.c_out * layer.h_out * layer.w_out
    muls = layer.c_in_per_group * layer.kernel[0] * layer.kernel[1]
    adds = muls - 1
    isg = per_output_isg * outputs if layer.c_in_per_group > 1 else 0
    return LayerCost(layer, outputs, muls, adds, (muls + adds) * outputs, isg)


def network_cost(net: str, size: int = 224, groups: int = 3) -> NetworkCost:
    """Cost of every conv/FC layer of ``net`` at input ``size`` with ``groups`` ISG groups."""
    _check_groups(groups)
    net = tv.check_network(net)
    return NetworkCost(net, size, groups, tuple(layer_cost(row, groups) for row in zoo.layers(net, size)))
