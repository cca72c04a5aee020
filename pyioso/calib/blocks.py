"""Reconstruction units: the network's ops cut into consecutive segments.

`block` granularity follows BRECQ: a block is one instance of a module type that holds a
residual add (BasicBlock, Bottleneck, InvertedResidual, ResBottleneckBlock, ...), found from the
traced graph, so every instance of that type is a block even without its skip (a stride-2
inverted residual). A residual add in no such module (written in a model's own forward) makes
a block of the ops from where its two inputs part to the add, found from the graph alone.
Convs and FCs outside blocks (stem, head) are reconstructed alone. `layer`
granularity (AdaRound) gives every conv/FC its own segment. Parameter-free ops outside a
segment (max/avg pool, an add between layers) run at the start of the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

from golden.errors import PyiosoError
from pyioso.calib.qnet import Node, QNet

GRANULARITIES = ("block", "layer")


@dataclass(frozen=True)
class Segment:
    """Consecutive nodes; `inputs` are the tensors it reads from before it, `outputs` those it
    produces that later nodes read (or the network output)."""

    name: str
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def trainable(self) -> bool:
        return any(n.kind in ("conv", "fc") for n in self.nodes)


def block_types(nodes) -> set[str]:
    """Type names of the innermost modules that hold a residual add."""
    return {n.scope[-1][1] for n in nodes if n.kind == "add" and n.scope}


def _block_of(node: Node, types: set[str]) -> str | None:
    return next((path for path, kind in node.scope if kind in types), None)


def graph_blocks(nodes: list[Node], types: set[str]) -> dict[str, str]:
    """Node name -> block (its add's name) for the residual adds outside every module type of
    `types`: the ops after the last tensor both of the add's inputs derive from, up to the add,
    that the add depends on."""
    producer = {n.output: i for i, n in enumerate(nodes)}

    def ancestors(tensor: str) -> set[str]:
        seen, todo = set(), [tensor]
        while todo:
            t = todo.pop()
            if t not in seen:
                seen.add(t)
                if t in producer:
                    todo.extend(nodes[producer[t]].inputs)
        return seen

    found: dict[str, str] = {}
    for i, add in enumerate(nodes):
        if add.kind != "add" or _block_of(add, types) is not None:
            continue
        first, second = (ancestors(t) for t in add.inputs[:2])
        split = max(first & second, key=lambda t: producer.get(t, -1))
        feeding = ancestors(add.output)
        for node in nodes[producer.get(split, -1) + 1:i + 1]:
            if node.output in feeding and _block_of(node, types) is None:
                found.setdefault(node.name, add.name)
    return found


def segments(net: QNet, granularity: str = "block") -> list[Segment]:
    if granularity not in GRANULARITIES:
        raise PyiosoError(f"granularity {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    types = block_types(net.nodes) if granularity == "block" else set()
    graph = graph_blocks(net.nodes, types) if granularity == "block" else {}
    groups: list[tuple[str, list[Node]]] = []
    pending: list[Node] = []
    for node in net.nodes:
        block = _block_of(node, types) or graph.get(node.name)
        if block is not None:
            if groups and groups[-1][0] == block and not pending:
                groups[-1][1].append(node)
            else:
                groups.append((block, [*pending, node]))
                pending = []
        elif node.kind in ("conv", "fc"):
            groups.append((node.name, [*pending, node]))
            pending = []
        else:
            pending.append(node)
    if pending:
        if not groups:
            raise PyiosoError("the network has no conv or linear layer to calibrate")
        groups[-1][1].extend(pending)
    return [_segment(name, nodes, groups, i, net) for i, (name, nodes) in enumerate(groups)]


def _segment(name: str, nodes: list[Node], groups, index: int, net: QNet) -> Segment:
    made = {n.output for n in nodes}
    before = {net.input_name} | {n.output for _, g in groups[:index] for n in g}
    inputs = tuple(dict.fromkeys(t for n in nodes for t in n.inputs if t not in made))
    missing = [t for t in inputs if t not in before]
    if missing:
        raise PyiosoError(f"segment {name} reads {missing} before they are computed")
    later = {t for _, g in groups[index + 1:] for n in g for t in n.inputs}
    outputs = tuple(t for t in (n.output for n in nodes) if t in later or t == net.output_name)
    return Segment(name, tuple(nodes), inputs, outputs)


def live_after(segs: list[Segment], index: int, net: QNet) -> set[str]:
    """Tensors computed up to segment `index` that segments after it still read."""
    return {t for s in segs[index + 1:] for t in s.inputs} | (
        {net.output_name} if index == len(segs) - 1 else set())
