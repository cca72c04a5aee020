"""The liberty libraries the report maps onto: files given on the command line, or the open PDKs
of shared/pdk, copied flat into the synthesis directory and digested; with what timing-driven
mapping and static timing need from each (time unit, a buffer cell, the common clock)."""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

from bench.hardware.yosys import digest
from golden.errors import PyiosoError
from pyioso import output

ROOT = Path(__file__).resolve().parents[2]

# The open libraries of shared/pdk (shared/pdk/README.md): name -> gzipped liberty files.
PDK_LIBRARIES = {
    "asap7": tuple(f"asap7/asap7sc7p5t_{part}_RVT_TT_nldm.lib.gz"
                   for part in ("AO", "INVBUF", "OA", "SEQ", "SIMPLE")),
    "sky130hd": ("sky130hd/sky130_fd_sc_hd__tt_025C_1v80.lib.gz",),
}
# The clock every variant is mapped for and compared at (MHz): a frequency all of them meet
# (`make report` measured fmax 684-1,074 MHz in ASAP7, the FP16 variant's unit the slowest, and
# 89-122 MHz in sky130hd; docs/HARDWARE.md, Timing); ASAP7's is the paper's 400 MHz. Files given
# with --liberty use --clock-mhz.
COMMON_MHZ = {"asap7": 400, "sky130hd": 50}
FANOUT = 4                  # the load on a block's outputs: this many buffer inputs


@dataclass(frozen=True)
class Library:
    """A liberty library: its files as copied into the synthesis directory, their digest, and
    where they came from (the PDK's relative path, or the names of the files given: a report
    holds no absolute path)."""

    name: str
    files: tuple[str, ...]
    digest: str
    source: str
    clock_mhz: float        # the common clock of the comparison
    time_unit: str          # the library's time unit, one of TIME_UNITS_PS
    buffer: tuple[str, str, str]    # the smallest buffer (cell, input, output): ABC's driving
                                    # cell for block inputs, Yosys's for wire-to-wire connections
    load: float             # FANOUT buffer inputs, in the library's capacitance unit

    @property
    def time_unit_ps(self) -> float:
        """The time unit in ps (ABC's -D is in ps)."""
        return TIME_UNITS_PS[self.time_unit]

    @property
    def period_ps(self) -> float:
        return 1e6 / self.clock_mhz


def _install(work: Path, name: str, source: Path) -> tuple[str, bytes]:
    """Copies (decompressing a .gz) one liberty file flat into `work`; (its name there, its text)."""
    text = gzip.decompress(source.read_bytes()) if source.suffix == ".gz" else source.read_bytes()
    if b"library" not in text[:10000]:
        raise PyiosoError(f"{source} is not a liberty file (no `library` group at its start)")
    target = work / f"{name}__{source.name.removesuffix('.gz')}"
    if not target.is_file() or target.read_bytes() != text:
        output.atomic_write(str(target), lambda f: f.write(text))
    return target.name, text


_BRACE = re.compile(r"[{}]")


def _groups(text: str, kind: str):
    """(name, body) of each `kind (name) { ... }` group of liberty text, braces matched."""
    for match in re.finditer(rf'\b{kind}\s*\(\s*"?([^")]*)"?\s*\)\s*\{{', text):
        depth = 1
        for brace in _BRACE.finditer(text, match.end()):
            depth += 1 if brace.group() == "{" else -1
            if not depth:
                yield match.group(1), text[match.end():brace.start()]
                break


def _attribute(body: str, name: str) -> str | None:
    found = re.search(rf'\b{name}\s*:\s*"?([^";\n]*)', body)      # ends at ; or a newline
    return found.group(1).strip() if found else None


def _buffer(texts: list[str], label: str) -> tuple[tuple[str, str, str], float]:
    """The smallest non-clock buffer (one input, output function equal to it): (cell, input pin,
    output pin), and the input's capacitance."""
    found = []
    for text in texts:
        for cell, body in _groups(text, "cell"):
            if "buf" not in cell.lower() or "clk" in cell.lower():
                continue
            pins = {p: (_attribute(b, "direction"), _attribute(b, "function"), _attribute(b, "capacitance"))
                    for p, b in _groups(body, "pin")}
            inputs = [p for p, (d, _, _) in pins.items() if d == "input"]
            outputs = [(p, (f or "").strip("() ")) for p, (d, f, _) in pins.items() if d == "output"]
            if len(inputs) == 1 and [f for _, f in outputs] == inputs:
                found.append((float(_attribute(body, "area") or 0), (cell, inputs[0], outputs[0][0]),
                              float(pins[inputs[0]][2] or 0)))
    if not found:
        raise PyiosoError(f"{label} has no buffer cell (a 'buf' cell with one input and output "
                          "function equal to it): timing-driven mapping needs one")
    _, cell, capacitance = min(found)
    return cell, capacitance


TIME_UNITS_PS = {"1ps": 1.0, "10ps": 10.0, "100ps": 100.0, "1ns": 1000.0}


def _time_unit(texts: list[str], label: str) -> str:
    for text in texts:
        unit = _attribute(text[:20000], "time_unit")
        if unit is not None:
            if unit not in TIME_UNITS_PS:
                raise PyiosoError(f"{label}: time_unit {unit} is not one of {', '.join(TIME_UNITS_PS)}")
            return unit
    raise PyiosoError(f"{label} names no time_unit")


def _library(work: Path, name: str, sources: list[Path], given: str, clock_mhz: float) -> Library:
    installed = [_install(work, name, path) for path in sources]
    texts = [t.decode(errors="replace") for _, t in installed]
    buffer, capacitance = _buffer(texts, given)
    return Library(name, tuple(n for n, _ in installed), digest(*(t for _, t in installed)), given,
                   clock_mhz, _time_unit(texts, given), buffer, round(FANOUT * capacitance, 6))


def libraries(work: Path, liberty: str = "", pdk: str = "", clock_mhz: float = 500) -> list[Library]:
    """The libraries to map onto: the files of `liberty` (comma-separated, one library), else
    the open PDKs under `pdk` when that directory exists, else none (generic counts only).
    `clock_mhz` is the common clock of given files (the PDKs' is COMMON_MHZ)."""
    work.mkdir(parents=True, exist_ok=True)
    paths = [Path(p.strip()) for p in liberty.split(",") if p.strip()]
    if paths:
        for path in paths:
            if not path.is_file():
                raise PyiosoError(f"liberty file {path} does not exist: give existing .lib or "
                                  ".lib.gz files (LIBERTY=a.lib[,b.lib...]) or leave LIBERTY "
                                  "empty for the open PDKs")
        name = re.sub(r"\W", "_", paths[0].name.split(".")[0])
        return [_library(work, name, paths, ", ".join(p.name for p in paths), clock_mhz)]
    if not pdk or not (ROOT / pdk).is_dir():
        return []
    for files in PDK_LIBRARIES.values():
        for f in files:
            if not (ROOT / pdk / f).is_file():
                raise PyiosoError(f"{pdk}/{f} is missing from the open PDKs (shared/pdk/README.md "
                                  "lists them): restore it, or give LIBERTY=... instead")
    return [_library(work, name, [ROOT / pdk / f for f in files], f"{pdk}/{name}", COMMON_MHZ[name])
            for name, files in PDK_LIBRARIES.items()]
