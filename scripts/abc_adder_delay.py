#!/usr/bin/env python
"""Why the area report's ABC script has no `dc2`: a registered 57-bit add and a 32 x 24-bit
multiply, synthesized as `make report` does (Han-Carlson prefix carries) and mapped onto ASAP7
for speed (delay target 1 ps) with the report's ABC script and with `dc2` put back, timed by
OpenSTA (register to register, 1 GHz clock). Needs ../shared/pdk and Debian's opensta.

    .venv/bin/python scripts/abc_adder_delay.py
"""

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hardware import area, liberty, timing, yosys  # noqa: E402

DESIGNS = {
    "57-bit add": "input signed [55:0] a, input signed [56:0] b, output reg signed [56:0] t);\n"
                  "  reg signed [55:0] ra; reg signed [56:0] rb;\n"
                  "  always @(posedge clk) begin ra <= a; rb <= b; t <= ra + rb; end",
    "32 x 24 multiply": "input signed [31:0] a, input signed [23:0] b, output reg signed [55:0] t);\n"
                        "  reg signed [31:0] ra; reg signed [23:0] rb;\n"
                        "  always @(posedge clk) begin ra <= a; rb <= b; t <= ra * rb; end",
}


def delay_ps(work: Path, lib, design: str, abc: str) -> float:
    (work / "top.v").write_text(f"module top(input clk, {design}\nendmodule\n")
    generic = yosys.GENERIC_SCRIPT.format(source="top.v", top="top", stat="g.json", netlist="g.il")
    (work / "g.ys").write_text(generic.replace("read_rtlil", "read_verilog", 1))
    subprocess.run([yosys._yosys(), "-q", "g.ys"], cwd=work, check=True, capture_output=True)
    constr, _ = area._constr(work, lib)
    mapping = yosys.MAP_SCRIPT.format(netlist="g.il", liberty=" ".join(f"-liberty {f}" for f in lib.files),
                                      abc=abc.format(delay=1), constr=constr, stat="m.json", macros="",
                                      verilog="m.v")
    (work / "m.ys").write_text(mapping)
    subprocess.run([yosys._yosys(), "-q", "m.ys"], cwd=work, check=True, capture_output=True)
    timing.plain_verilog(work / "m.v")
    (work / "s.tcl").write_text(
        f"foreach f {{{' '.join(lib.files)}}} {{ read_liberty $f }}\nread_verilog m.v\nlink_design top\n"
        f"create_clock -name clk -period {round(1000 / lib.time_unit_ps, 6)} [get_ports clk]\n"
        "report_checks -path_delay max -from [all_registers] -to [all_registers] -digits 1\n")
    out = subprocess.run([timing.check_sta(), "-exit", "s.tcl"], cwd=work, capture_output=True, text=True).stdout
    return float(re.search(r"^\s*(-?[\d.]+)\s+data arrival time", out, re.M).group(1)) * lib.time_unit_ps


def main() -> None:
    yosys.prepare_yosys()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lib = next(lib for lib in liberty.libraries(work / "libs", "", "../shared/pdk") if lib.name == "asap7")
        for f in lib.files:
            shutil.copy(work / "libs" / f, work / f)
        with_dc2 = yosys.ABC_SCRIPT.replace("strash;", "strash;dc2;", 1)
        for name, design in DESIGNS.items():
            print(f"{name}: {delay_ps(work, lib, design, with_dc2):,.0f} ps with dc2, "
                  f"{delay_ps(work, lib, design, yosys.ABC_SCRIPT):,.0f} ps without", flush=True)


if __name__ == "__main__":
    main()
