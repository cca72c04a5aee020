"""Static timing of the mapped engine with OpenSTA: the whole engine at once, its blocks' mapped
netlists linked under the controller's, memories as ideal macros.

Each block is mapped on its own (area.py); its netlist keeps the other blocks as instances, so
reading every block's netlist and linking the top gives the whole engine's hierarchy, and a path
from the array's output registers through the IOSO unit into the accumulator is timed as one
path. Scratchpads, tables and accumulator rows are memories: SRAM macros whose access and setup
times come from a memory compiler that no open PDK has. They are timed as ideal registers
(clock to output 0, setup 0, on one cell per memory shape in a generated liberty library): a path
from or into a memory counts its logic only, and the table says where a path starts and ends.
Inputs and outputs of the engine's host port are timed against the clock with no external delay.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.hardware.blocks import block_of
from bench.hardware.liberty import Library
from golden.errors import PyiosoError

MEMORY_PARAMETERS = ("MEMID", "WIDTH", "OFFSET", "SIZE", "ABITS", "RD_PORTS", "RD_CLK_ENABLE",
                     "RD_CLK_POLARITY", "RD_TRANSPARENCY_MASK", "RD_COLLISION_X_MASK",
                     "RD_WIDE_CONTINUATION", "RD_CE_OVER_SRST", "RD_ARST_VALUE", "RD_SRST_VALUE",
                     "RD_INIT_VALUE", "WR_PORTS", "WR_CLK_ENABLE", "WR_CLK_POLARITY",
                     "WR_PRIORITY_MASK", "WR_WIDE_CONTINUATION", "INIT")
TOP = "engine"
STA = "sta"                 # Debian's opensta (apt-get install opensta)
FASTEST_PS = 1              # ABC's delay target for each variant's own fmax: as fast as it maps


@dataclass(frozen=True)
class MemoryShape:
    """A $mem_v2 cell's ports: what its macro cell needs."""

    width: int
    size: int
    abits: int
    read_ports: int
    write_ports: int

    @property
    def cell(self) -> str:
        return f"pyioso_mem_{self.size}x{self.width}_{self.read_ports}r{self.write_ports}w"

    def pins(self) -> list[tuple[str, int, str, str | None]]:
        """(name, width, direction, related clock) of every port, as Yosys names them."""
        r, w = self.read_ports, self.write_ports
        return [("RD_CLK", r, "input", None), ("RD_EN", r, "input", "RD_CLK"),
                ("RD_ARST", r, "input", None), ("RD_SRST", r, "input", None),
                ("RD_ADDR", r * self.abits, "input", "RD_CLK"),
                ("RD_DATA", r * self.width, "output", "RD_CLK"), ("WR_CLK", w, "input", None),
                ("WR_EN", w * self.width, "input", "WR_CLK"),
                ("WR_ADDR", w * self.abits, "input", "WR_CLK"),
                ("WR_DATA", w * self.width, "input", "WR_CLK")]


def memory_shapes(netlist: str) -> list[MemoryShape]:
    """The shapes of the $mem_v2 cells in a block's RTLIL netlist."""
    shapes = []
    for cell in re.finditer(r"^\s*cell \$mem_v2 \S+\n((?:\s*parameter .*\n)+)", netlist, re.MULTILINE):
        params = dict(re.findall(r"parameter \\(\w+) (\S+)", cell.group(1)))
        shapes.append(MemoryShape(*(int(params[p]) for p in ("WIDTH", "SIZE", "ABITS", "RD_PORTS",
                                                             "WR_PORTS"))))
    return sorted(set(shapes), key=lambda s: s.cell)


def macro_commands(shapes: list[MemoryShape]) -> str:
    """Yosys commands that turn each memory into an instance of its shape's macro cell (no
    parameters: OpenSTA reads structural Verilog only)."""
    lines = [f"chtype -set {s.cell} t:$mem_v2 r:WIDTH={s.width} %i r:SIZE={s.size} %i "
             f"r:RD_PORTS={s.read_ports} %i r:WR_PORTS={s.write_ports} %i" for s in shapes]
    unset = " ".join(f"-unset {p}" for p in MEMORY_PARAMETERS)
    lines += [f"setparam {unset} t:{s.cell}" for s in shapes]
    return "\n".join(lines)


_DECLARATION = re.compile(r"^\s*(?:input|output|inout|wire)\s+(?:signed\s+)?\[(\d+):(\d+)\]\s+(\\\S+ |\S+?)\s*;",
                          re.MULTILINE)
_ELEMENT = re.compile(r"(\d+)'([bhd])([0-9a-fA-FxXzZ_]+)|(\\\S+ |[A-Za-z_][\w$]*)\s*(?:\[(\d+)(?::(\d+))?\])?")


def _bits(expression: str, ranges: dict[str, tuple[int, int]]) -> list[str]:
    """The single-bit operands of a Verilog concatenation or operand, most significant first."""
    bits = []
    for const_width, base, digits, name, hi, lo in _ELEMENT.findall(expression.strip().strip("{}") + " "):
        if const_width:
            value = re.sub(r"[xXzZ_]", "0", digits)
            number = int(value, {"b": 2, "h": 16, "d": 10}[base])
            bits += [f"1'b{(number >> i) & 1}" for i in reversed(range(int(const_width)))]
        elif hi:
            top, bottom = int(hi), int(lo or hi)
            step = -1 if top >= bottom else 1
            bits += [f"{name}[{i}]" for i in range(top, bottom + step, step)]
        elif name in ranges:
            top, bottom = ranges[name]
            step = -1 if top >= bottom else 1
            bits += [f"{name}[{i}]" for i in range(top, bottom + step, step)]
        else:
            bits.append(name)
    return bits


def plain_verilog(path: Path) -> None:
    """Rewrites a Yosys netlist into the Verilog subset OpenSTA's reader takes: no `signed`
    (it means nothing to a netlist), no brackets inside escaped names, and one `assign` per bit
    (Yosys joins the aliases of port bits into concatenations, which that reader refuses)."""
    text = re.sub(r"^(\s*(?:input|output|inout|wire)) signed\b", r"\1", path.read_text(), flags=re.MULTILINE)
    # an escaped name with brackets (`\p$45.q[3]_22_ `) reads as a bus bit there, which cuts
    # every path through the net
    text = re.sub(r"\\(\S*[\[\]]\S*) ", lambda m: "\\" + re.sub(r"[\[\]]", "_", m.group(1)) + " ", text)
    ranges = {name: (int(hi), int(lo)) for hi, lo, name in _DECLARATION.findall(text)}

    def split(match: re.Match) -> str:
        left, right = _bits(match.group(1), ranges), _bits(match.group(2), ranges)
        if len(left) != len(right):
            raise PyiosoError(f"{path.name}: cannot split `{match.group(0)[:80]}` into bits")
        return "".join(f"  assign {a} = {b};\n" for a, b in zip(left, right))
    text = re.sub(r"^\s*assign (.*?) = (.*?);\n", split, text, flags=re.MULTILINE)
    path.write_text(text)


def _pin(name: str, width: int, direction: str, clock: str | None) -> str:
    head = f"bus ({name}) {{ bus_type : bus{width};" if width > 1 else f"pin ({name}) {{"
    body = f" direction : {direction};"
    if direction == "input":
        body += " capacitance : 0;"
    if name.endswith("CLK"):
        body += " clock : true;"
    elif clock and direction == "output":
        body += (f' timing () {{ related_pin : "{clock}"; timing_type : rising_edge; '
                 + " ".join(f'{t} (scalar) {{ values ("0"); }}' for t in
                            ("cell_rise", "cell_fall", "rise_transition", "fall_transition")) + " }")
    elif clock:
        body += (f' timing () {{ related_pin : "{clock}"; timing_type : setup_rising; '
                 'rise_constraint (scalar) { values ("0"); } '
                 'fall_constraint (scalar) { values ("0"); } }')
    return f"    {head}{body} }}\n"


def macro_liberty(shapes: list[MemoryShape], time_unit: str) -> str:
    """A liberty library with one ideal-register macro cell per memory shape."""
    widths = sorted({w for s in shapes for _, w, _, _ in s.pins() if w > 1})
    thresholds = "".join(f"  {k}_threshold_pct_{e} : {v};\n" for k, v in
                         (("input", 50), ("output", 50), ("slew_lower", 10), ("slew_upper", 90))
                         for e in ("rise", "fall"))
    types = "".join(f"  type (bus{w}) {{ base_type : array; data_type : bit; bit_width : {w}; "
                    f"bit_from : {w - 1}; bit_to : 0; downto : true; }}\n" for w in widths)
    cells = "".join(f"  cell ({s.cell}) {{\n    area : 0;\n" + "".join(_pin(*p) for p in s.pins())
                    + "  }\n" for s in shapes)
    return (f'library (pyioso_macros) {{\n  delay_model : table_lookup;\n  time_unit : "{time_unit}";\n'
            '  voltage_unit : "1V";\n  current_unit : "1mA";\n  capacitive_load_unit (1, ff);\n'
            '  pulling_resistance_unit : "1kohm";\n' + thresholds + types + cells + "}\n")


# The engine's datapath units by instance (the feeds, which generate addresses, are the
# controller's part of the timing); a path from and to them is the datapath's own.
DATAPATH = ("array", "ioso", "acc", "bn", "act", "add", "dw", "narrow", "widen")
SCRIPT = """foreach f {{{liberty}}} {{ read_liberty $f }}
read_liberty {macros}
foreach f {{{netlists}}} {{ read_verilog $f }}
link_design {top}
create_clock -name clk -period {period} [get_ports clk]
set_input_delay 0 -clock clk [delete_from_list [all_inputs] [get_ports clk]]
set_output_delay 0 -clock clk [all_outputs]
puts "=== critical"
report_checks -path_delay max -digits 4
puts "=== datapath"
report_checks -path_delay max -digits 4 -from [get_cells {{{datapath}}}] -to [get_cells {{{datapath}}}]
puts "=== ioso"
report_checks -path_delay max -digits 4 -from [get_cells {{array/* ioso/*}}] -to [get_cells {{ioso/* acc/*}}]
puts "=== end"
"""


def check_sta() -> str:
    path = shutil.which(STA)
    if path is None:
        raise PyiosoError("OpenSTA (`sta`) is not installed: run `sudo apt-get install opensta` "
                          "(make report installs it)")
    return path


@dataclass(frozen=True)
class TimedPath:
    """One timed path: where it starts and ends (an instance or a port), the block and kind
    (register, memory, port) of each end, the logic cells between, and its times in ps."""

    start: str
    end: str
    start_block: str
    end_block: str
    start_kind: str
    end_kind: str
    cells: int
    arrival_ps: float
    required_ps: float
    period_ps: float

    @property
    def min_period_ps(self) -> float:
        """The clock period this path needs: the period less its slack."""
        return self.period_ps - (self.required_ps - self.arrival_ps)

    @property
    def fmax_mhz(self) -> float:
        return 1e6 / self.min_period_ps


def _end(point: str, description: str, cells: dict[str, str]) -> tuple[str, str]:
    """(block, kind) of a path's start or end point: `port` for the host port; else the block of
    the instance's top-level parent (the controller for the top's own cells)."""
    if "port" in description:
        return "port", "port"
    kind = "memory" if cells.get(point, "").startswith("pyioso_mem") else "register"
    names = point.split("/")
    return block_of(f"{TOP}.{names[0]}" if len(names) > 1 else TOP).name, kind


def parse_path(report: str, unit_ps: float, period_ps: float) -> TimedPath | None:
    """The path of one `report_checks` section at a clock of `period_ps`; None when it has none."""
    points = re.findall(r"^(?:Start|End)point: (\S+) \((.*)\)$", report, re.MULTILINE)
    times = {}                  # the first of each: the summary below repeats them negated
    for value, what in re.findall(r"^\s*(-?[\d.]+)\s+data (arrival|required) time", report, re.MULTILINE):
        times.setdefault(what, float(value))
    if len(points) != 2 or len(times) != 2:
        return None
    cells = {}                  # instance -> cell type, in path order
    for pin, cell in re.findall(r"^\s*-?[\d.]+\s+-?[\d.]+ [v^] (\S+) \((\S+)\)$", report, re.MULTILINE):
        if cell not in ("in", "out"):
            cells.setdefault(pin.rsplit("/", 1)[0], cell)
    (start, start_how), (end, end_how) = points
    start_block, start_kind = _end(start, start_how, cells)
    end_block, end_kind = _end(end, end_how, cells)
    logic = len(cells) - (start_kind != "port") - (end_kind != "port")
    return TimedPath(start, end, start_block, end_block, start_kind, end_kind, logic,
                     times["arrival"] * unit_ps, times["required"] * unit_ps, period_ps)


def sta(work: Path, key: str, netlists: list[str], library: Library, period_ps: float,
        shapes: list[MemoryShape]) -> dict:
    """Times the engine linked from `netlists` (file names in `work`, the top's first) at
    `period_ps`: its critical path, the datapath's worst (units to units, feeds left out), and
    the worst from the array into the accumulator (through the IOSO unit, or into and out of
    its register stage)."""
    macros = f"{key}.macros.lib"
    (work / macros).write_text(macro_liberty(shapes, library.time_unit))
    script = SCRIPT.format(liberty=" ".join(library.files), macros=macros, netlists=" ".join(netlists),
                           top=TOP, period=round(period_ps / library.time_unit_ps, 6),
                           datapath=" ".join(f"{i}/*" for i in DATAPATH))
    (work / f"{key}.tcl").write_text(script)
    done = subprocess.run([check_sta(), "-exit", f"{key}.tcl"], cwd=work, capture_output=True, text=True)
    (work / f"{key}.sta.log").write_text(done.stdout + done.stderr)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
    sections = dict(re.findall(r"^=== (\w+)\n(.*?)(?=^=== )", done.stdout, re.MULTILINE | re.DOTALL))
    critical = parse_path(sections.get("critical", ""), library.time_unit_ps, period_ps)
    if done.returncode or errors or critical is None:
        raise PyiosoError(f"OpenSTA failed on {key} (log: {work / f'{key}.sta.log'}): "
                          + ("; ".join(errors[:5]) or "no path reported"))
    paths = {name: parse_path(sections.get(name, ""), library.time_unit_ps, period_ps)
             for name in ("datapath", "ioso")}
    return {"period_ps": period_ps, "critical": _json(critical), **{n: _json(p) for n, p in paths.items()}}


def _json(path: TimedPath | None) -> dict | None:
    return None if path is None else {**path.__dict__, "min_period_ps": path.min_period_ps,
                                      "fmax_mhz": 1e6 / path.min_period_ps}
