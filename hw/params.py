"""The engine's build parameters and the datapath widths they imply (ARCHITECTURE §6, §7).

Every hardware unit, testbench and cycle model takes its widths from here, so a width is defined
once. The code ranges come from golden (ARCHITECTURE §1-§3): the hardware cannot be built for a
code that the spec does not define.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from amaranth.utils import ceil_log2

from golden.errors import PyiosoError
from golden.layers import check_bits
from golden.spec import ACT_BITS, CODE_BITS, GRANULARITY, ISG_SHIFT, ISG_SHIFTS, W_ACC, W_BITS, W_M
from hw.host import LANES, WORD_BITS

ISG_UNITS = ("shift", "multiplier")     # the IOSO unit: shift-add (the product) or multiplier
REQUANTS = ("int", "fp16")              # post-accumulator scaling: integer BN unit or FP16


@dataclass(frozen=True)
class EngineParams:
    """One engine configuration.

    `lanes` is the post-processing width (BN and activation values per cycle). The paper's engine
    has 8; the default here is the array's 16 columns, so the last K-tile of every N-tile streams
    through at full rate (with 8 it takes two cycles per pixel: Ho*Wo extra cycles per N-tile).
    `a_bits`/`w_bits` are port widths: a layer with narrower codes is run by the host zero
    extending activation codes and sign extending weight codes. `isg=False` builds the engine
    without the IOSO shift-add (the area/latency baseline); `isg_shift` is then unused.

    Two settings build the comparison variants of the area report (docs/HARDWARE.md), which run
    no golden layer (the driver refuses them): `isg_unit="multiplier"` puts a per-group
    fixed-point multiplier where the shift-add is (what ISG costs without the shift trick, as
    ICWQ would), `requant="fp16"` puts FP16 scale-and-offset arithmetic where the integer BN
    unit is (the paper's FP16 row). `isg_register=True` puts a register stage after the IOSO
    unit (ARCHITECTURE §6: measured, not chosen; one cycle more per pass).
    """

    rows: int = GRANULARITY
    cols: int = LANES
    a_bits: int = CODE_BITS
    w_bits: int = CODE_BITS
    isg: bool = True
    isg_shift: int = ISG_SHIFT
    acc_width: int = W_ACC
    mult_width: int = W_M
    lanes: int | None = None        # None: one per column
    isg_unit: str = "shift"
    requant: str = "int"
    isg_register: bool = False      # a register stage after the IOSO unit (one cycle per pass)

    def __post_init__(self):
        if self.lanes is None:
            object.__setattr__(self, "lanes", self.cols)
        for name in ("rows", "cols", "lanes"):
            if not isinstance(getattr(self, name), int) or not 1 <= getattr(self, name) <= LANES:
                raise PyiosoError(f"{name}={getattr(self, name)!r}: use 1..{LANES} (a "
                                  f"{WORD_BITS}-bit host word holds {LANES} codes)")
        if self.cols % self.lanes:
            divisors = ", ".join(str(d) for d in range(1, self.cols + 1) if self.cols % d == 0)
            raise PyiosoError(f"lanes={self.lanes} does not divide cols={self.cols}: use one of "
                              f"{divisors}")
        check_bits(self.a_bits, "a_bits", ACT_BITS)
        check_bits(self.w_bits, "w_bits", W_BITS)
        if self.isg_shift not in ISG_SHIFTS:
            raise PyiosoError(f"isg_shift={self.isg_shift!r} is out of range: use "
                              f"{ISG_SHIFTS.start}..{ISG_SHIFTS.stop - 1} (ARCHITECTURE §2)")
        for name, allowed in (("isg_unit", ISG_UNITS), ("requant", REQUANTS)):
            if getattr(self, name) not in allowed:
                raise PyiosoError(f"{name}={getattr(self, name)!r}: use one of {', '.join(allowed)}")
        if self.isg_register and not self.isg:
            raise PyiosoError("isg_register=True registers the IOSO unit's output: it needs isg=True")
        if self.isg_unit == "multiplier" and not self.isg:
            raise PyiosoError("isg_unit='multiplier' replaces the IOSO unit's shift-add: it needs isg=True")
        if self.isg_unit == "multiplier" and self.mult_width <= self.isg_shift:
            raise PyiosoError(f"mult_width={self.mult_width} leaves no fraction bits beyond the "
                              f"output's {self.isg_shift}: raise mult_width")
        if self.mult_width < 2:
            raise PyiosoError(f"mult_width={self.mult_width} is too narrow: use at least 2")
        if self.acc_width < self.ioso_width:
            raise PyiosoError(f"acc_width={self.acc_width} cannot hold one IOSO output of "
                              f"{self.ioso_width} bits: raise acc_width (ARCHITECTURE §7)")
        if self.t_width > 63:
            raise PyiosoError(f"acc_width + mult_width + 1 = {self.t_width} exceeds the 63 bits "
                              "golden computes t in: lower acc_width or mult_width (ARCHITECTURE §7)")

    @property
    def product_width(self) -> int:
        """Signed width of one PE product w*x."""
        return self.a_bits + self.w_bits

    @property
    def psum_width(self) -> int:
        """Signed width of a column partial sum over `rows` products."""
        return self.product_width + ceil_log2(self.rows)

    @property
    def ioso_width(self) -> int:
        """Signed width of the IOSO unit's output p*(2^n + s); the partial sum itself without ISG."""
        return self.psum_width + self.isg_shift + 1 if self.isg else self.psum_width

    @property
    def runs_golden(self) -> bool:
        """Whether the driver can run golden layers on the engine: it computes the spec's
        arithmetic (ARCHITECTURE §2-§3; not one of the area report's comparison variants) on a
        G x G array, whose K-tiles and N-tiles fill whole host words (§4, §6)."""
        return (self.isg_unit == "shift" and self.requant == "int"
                and self.rows == self.cols == GRANULARITY)

    @property
    def t_width(self) -> int:
        """Signed width of the BN product and sum t = S*M + B."""
        return self.acc_width + self.mult_width + 1

    def to_json(self) -> str:
        """The parameters and their derived widths, for hosts, cycle models and build hashes."""
        widths = {name: getattr(self, name)
                  for name in ("product_width", "psum_width", "ioso_width", "t_width")}
        return json.dumps({**asdict(self), "widths": widths}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EngineParams:
        """Inverse of `to_json` (the derived widths are recomputed, not read)."""
        values = json.loads(text)
        return cls(**{f.name: values[f.name] for f in fields(cls)})
