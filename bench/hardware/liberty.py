"""The liberty libraries the area report maps onto: files given on the command line, or the
open PDKs of shared/pdk, copied flat into the synthesis directory and digested."""

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


@dataclass(frozen=True)
class Library:
    """A liberty library: its files as copied into the synthesis directory, their digest, and
    where they came from (the PDK's relative path, or the names of the files given: a report
    holds no absolute path)."""

    name: str
    files: tuple[str, ...]
    digest: str
    source: str


def _install(work: Path, name: str, source: Path) -> tuple[str, bytes]:
    """Copies (decompressing a .gz) one liberty file flat into `work`; (its name there, its text)."""
    text = gzip.decompress(source.read_bytes()) if source.suffix == ".gz" else source.read_bytes()
    if b"library" not in text[:10000]:
        raise PyiosoError(f"{source} is not a liberty file (no `library` group at its start)")
    target = work / f"{name}__{source.name.removesuffix('.gz')}"
    if not target.is_file() or target.read_bytes() != text:
        output.atomic_write(str(target), lambda f: f.write(text))
    return target.name, text


def _library(work: Path, name: str, sources: list[Path], given: str) -> Library:
    installed = [_install(work, name, path) for path in sources]
    return Library(name, tuple(n for n, _ in installed), digest(*(t for _, t in installed)), given)


def libraries(work: Path, liberty: str = "", pdk: str = "") -> list[Library]:
    """The libraries to map onto: the files of `liberty` (comma-separated, one library), else
    the open PDKs under `pdk` when that directory exists, else none (generic counts only)."""
    work.mkdir(parents=True, exist_ok=True)
    paths = [Path(p.strip()) for p in liberty.split(",") if p.strip()]
    if paths:
        for path in paths:
            if not path.is_file():
                raise PyiosoError(f"liberty file {path} does not exist: give existing .lib or "
                                  ".lib.gz files (LIBERTY=a.lib[,b.lib...]) or leave LIBERTY "
                                  "empty for the open PDKs")
        name = re.sub(r"\W", "_", paths[0].name.split(".")[0])
        return [_library(work, name, paths, ", ".join(p.name for p in paths))]
    if not pdk or not (ROOT / pdk).is_dir():
        return []
    for files in PDK_LIBRARIES.values():
        for f in files:
            if not (ROOT / pdk / f).is_file():
                raise PyiosoError(f"{pdk}/{f} is missing from the open PDKs (shared/pdk/README.md "
                                  "lists them): restore it, or give LIBERTY=... instead")
    return [_library(work, name, [ROOT / pdk / f for f in files], f"{pdk}/{name}")
            for name, files in PDK_LIBRARIES.items()]
