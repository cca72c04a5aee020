"""The engine variants the report compares, and the paper's Table 11 they answer.

Every variant is built from the same sources; only EngineParams differ (hw/params.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hw.params import EngineParams


@dataclass(frozen=True)
class Variant:
    title: str          # a Table 11 column
    what: str           # one line on what the build holds
    settings: dict = field(default_factory=dict)


VARIANTS = {
    "integer": Variant("integer only", "no IOSO unit: accumulator straight to the integer BN unit",
                       {"isg": False}),
    "ioso": Variant("+IOSO", "the product: shift-add IOSO unit between array and accumulator"),
    "ioso_reg": Variant("+IOSO, registered", "the shift-add with its own register stage after "
                        "it: one cycle more per pass", {"isg_register": True}),
    "icwq": Variant("+group multiplier", "a 24-bit fixed-point multiplier per column in place "
                    "of the shift-add: arbitrary group scales (ICWQ-like), no shift trick",
                    {"isg_unit": "multiplier"}),
    "fp16": Variant("FP16 scaling", "no IOSO unit; FP16 convert, multiply and add in place of "
                    "the integer BN unit", {"isg": False, "requant": "fp16"}),
}
BASELINE, PRODUCT = "integer", "ioso"

# Table 11 of the paper (appendix E): TSMC 12 nm, 400 MHz, 16x16 MACs, 8 post-processing lanes,
# latency of the resnet50 layer with a 28x28x128 input and a 3x3x128x128 kernel.
PAPER = {
    "process": "TSMC 12 nm", "clock_mhz": 400, "array": "16x16", "lanes": 8,
    "area_um2": {"integer": 429_342, "ioso": 439_762, "fp16": 882_233},
    "latency_us": {"integer": 1129.2775, "ioso": 1129.2825, "fp16": 1129.3150},
}


def engines(rows: int, cols: int, lanes: int) -> dict[str, EngineParams]:
    """Each variant's parameters for an array of rows x cols and `lanes` post-processing lanes."""
    return {name: EngineParams(rows=rows, cols=cols, lanes=lanes, **v.settings)
            for name, v in VARIANTS.items()}
