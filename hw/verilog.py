"""The engine as Verilog: reproducible text and a description of the build beside it.

`to_verilog` emits no source locations and refuses text that embeds a local path, so the same
sources give the same bytes on every machine; `describe` lists what an integrator needs next to
the file: build parameters, derived widths, scratchpad depths, the host protocol. `make verilog`
(sim/verilog.py) writes both and lints the Verilog under Verilator.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from hw.host import Csr, Depths, Space
from hw.params import EngineParams

ROOT = Path(__file__).resolve().parent.parent


def to_verilog(component: wiring.Component, top: str) -> str:
    """Verilog of `component` as module `top`, free of source locations and local paths."""
    text = verilog.convert(component, name=top, emit_src=False, strip_internal_attrs=True)
    for local in {str(ROOT), str(Path.home()), sys.prefix}:
        if local in text:
            raise RuntimeError(f"the Verilog of {top} embeds the local path {local}")
    return text


def describe(params: EngineParams, depths: Depths) -> dict:
    """The engine build as JSON: parameters and widths, scratchpad depths, ports, host spaces."""
    return {
        "top": "engine", "params": json.loads(params.to_json()), "depths_words": depths.to_json(),
        "ports": {"cmd": "stream in: {write, space[3], addr[20], data[128]}",
                  "resp": "stream out: data[128], one per read command", "done": "out"},
        "spaces": {s.name: int(s) for s in Space}, "csr": {c.name: int(c) for c in Csr},
    }
