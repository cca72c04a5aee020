"""Plots written next to a calibration: loss curves, ISG group sizes, learned input scales
(the paper's Fig. 11), the accuracy of `pyioso eval`, and the benchmarks' accuracy plots."""

from __future__ import annotations

from pathlib import Path

from golden.spec import PAPER_GROUP_CODES
from pyioso.output import save_png

_GROUP_LABELS = {0: "1", -1: "1 - 2^-4", 1: "1 + 2^-4"}
LEGEND_MAX = 24         # loss curves named in a legend; more are colored by depth


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _panel_grid(count: int):
    """(figure, axes) for `count` panels, two per row, the unused ones hidden: fits a page."""
    cols = min(2, count)
    rows = -(-count // cols)
    fig = _figure(5 * cols, 3.2 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes


def calibration(history: list[dict], directory: Path) -> None:
    if history:
        losses(history, directory / "losses.png")
    legal = [(e["segment"], c) for e in history for c in e.get("legalize", {}).get("classes", [])]
    if legal:
        group_sizes(legal, directory / "groups.png")
        input_scales(legal, directory / "input_scales.png")


def losses(history: list[dict], path: Path) -> None:
    """Per stage: every segment's loss during training (left), before/after (right)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    stages = list(dict.fromkeys(e["stage"] for e in history))
    most = max(sum(e["stage"] == stage for e in history) for stage in stages)
    fig = _figure(max(11, 6 + 0.18 * most), 3.2 * len(stages))
    axes = fig.subplots(len(stages), 2, squeeze=False)
    for row, stage in zip(axes, stages):
        entries = [e for e in history if e["stage"] == stage]
        # A legend fits a block-wise run; a layer-wise one (AdaRound: every layer) gets a depth scale.
        depth = Normalize(0, max(1, len(entries) - 1))
        for i, e in enumerate(entries):
            if not e["curve"]:          # a segment with nothing to learn in this stage
                continue
            its, values = zip(*e["curve"])
            color = None if len(entries) <= LEGEND_MAX else colormaps["viridis"](depth(i))
            row[0].plot(its, values, label=e["segment"], lw=1, color=color)
        row[0].set(title=f"{stage}: reconstruction loss", xlabel="iteration", yscale="log")
        if len(entries) <= LEGEND_MAX:
            row[0].legend(fontsize=6, ncol=2)
        else:
            fig.colorbar(ScalarMappable(depth, "viridis"), ax=row[0], label="segment, input to output")
        x = range(len(entries))
        row[1].bar([i - 0.2 for i in x], [e["loss_before"] for e in entries], 0.4, label="before")
        row[1].bar([i + 0.2 for i in x], [e["loss_after"] for e in entries], 0.4, label="after")
        row[1].set(title=f"{stage}: loss per segment", yscale="log")
        row[1].set_xticks(list(x), [e["segment"] for e in entries], rotation=60,
                          fontsize=7 if len(entries) <= LEGEND_MAX else 5)
        row[1].legend(fontsize=7)
    save_png(fig, str(path))


def group_sizes(legal: list[tuple[str, dict]], path: Path) -> None:
    """Channels per ISG group after legalization, per tensor class (named by the segment that
    learned it)."""
    fig = _figure(max(6, 0.5 * len(legal)), 3.5)
    ax = fig.subplots()
    bottom = [0] * len(legal)
    for code in PAPER_GROUP_CODES:
        counts = [sum(1 for c in rec["codes"] if c == code) for _, rec in legal]
        ax.bar(range(len(legal)), counts, bottom=bottom, label=f"scale {_GROUP_LABELS[code]}")
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set_xticks(range(len(legal)), [f"{seg} (class {rec['class']})" for seg, rec in legal],
                  rotation=60, fontsize=7)
    ax.set(ylabel="input channels", title="ISG group sizes after legalization")
    ax.legend(fontsize=7)
    save_png(fig, str(path))


def input_scales(legal: list[tuple[str, dict]], path: Path) -> None:
    """Distribution of the soft input-channel scales when the groups were fixed (Fig. 11)."""
    fig = _figure(max(6, 0.5 * len(legal)), 3.5)
    ax = fig.subplots()
    ax.violinplot([rec["soft_scales"] for _, rec in legal], showmedians=True)
    ax.set_xticks(range(1, len(legal) + 1), [seg for seg, _ in legal], rotation=60, fontsize=7)
    ax.set(ylabel="learned input scale gamma^y", title="Input-channel scales before legalization")
    save_png(fig, str(path))


def accuracy(result: dict, path: Path) -> None:
    fig = _figure(4.5, 3)
    ax = fig.subplots()
    names, values = zip(*result["top1"].items())
    bars = ax.bar(names, values, color=["tab:gray", "tab:blue", "tab:green"][:len(names)])
    ax.bar_label(bars, fmt="%.2f")
    ax.set(ylabel="top-1 (%)", title=f"{result['data']}, {result['images']} images",
           ylim=(0, 100))
    save_png(fig, str(path))


# How far under float a setting's mean may sit and still set the scale: lower ones (unrecovered
# rounding, 10-20% on ten classes) would squeeze the methods a reader compares, a few tenths apart
# near float, into one pixel row; they sit on the panel's floor instead, each with its value.
FLOOR_BELOW_FLOAT = 20.0


def accuracy_vs_bits(records: list[dict], nets: list[str], labels: list[str], methods: tuple[str, ...],
                     path: Path) -> None:
    """make bench-accuracy: mean top-1 per bit setting (WxAy label) and method, a dot each with its
    seeds' std, side by side within a setting (settings are not a scale: no line joins them); the
    settings some method recorded; a panel per net. Means more than FLOOR_BELOW_FLOAT under float
    are a labelled triangle on the floor."""
    import statistics

    fig, axes = _panel_grid(len(nets))
    for ax, net in zip(axes, nets):
        mine = [r for r in records if r["net"] == net]
        shown = [label for label in labels if any(r["bits"] == label for r in mine)]
        floats = [r["float"] for r in mine]
        width = 0.8 / max(1, len(methods))
        dots = {}
        for k, method in enumerate(methods):
            values = [(i, [r["fake_quant"] for r in mine if r["method"] == method and r["bits"] == label])
                      for i, label in enumerate(shown)]
            dots[method] = [(i - 0.4 + width * (k + 0.5), statistics.fmean(v),
                             statistics.stdev(v) if len(v) > 1 else 0.0) for i, v in values if v]
        cut = floats[0] - FLOOR_BELOW_FLOAT if floats else float("-inf")
        scaled = [y - err for points in dots.values() for _, y, err in points if y >= cut]
        floor = min(scaled, default=cut) - 1.0       # room for the floor's labels
        for k, (method, points) in enumerate(dots.items()):
            kept = [p for p in points if p[1] >= cut]
            if kept:
                xs, ys, errs = zip(*kept)
                ax.errorbar(xs, ys, yerr=errs, fmt="o", ms=3, capsize=2, color=f"C{k}", label=method)
            for n, (x, y, _) in enumerate(p for p in points if p[1] < cut):
                ax.plot(x, floor, "v", ms=5, color=f"C{k}", label=None if kept or n else method)
                ax.annotate(f"{y:.1f}", (x, floor), xytext=(0, 5), textcoords="offset points", ha="center",
                            va="bottom", rotation=90, fontsize=6, color=f"C{k}")     # upright: neighbours touch
        if floats:
            ax.axhline(floats[0], color="k", ls=":", lw=1, label="float")
        if any(y < cut for points in dots.values() for _, y, _ in points):
            ax.set_ylim(floor - 0.3, None)
            ax.set_xlabel(f"▼ mean more than {FLOOR_BELOW_FLOAT:.0f} pp under float, off the scale: its value",
                          fontsize=7)
        ax.set_xticks(range(len(shown)), shown)
        if shown:                                   # every setting's slot whole, at the edges too
            ax.set_xlim(-0.5, len(shown) - 0.5)
        ax.set(title=f"{net}: top-1 versus bits", ylabel="top-1 (%)")
        handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
        if handles:                                 # nothing recorded yet: no legend
            order = [name for name in (*methods, "float") if name in handles]
            ax.legend([handles[name] for name in order], order, fontsize=7)
    save_png(fig, str(path))


def ablation(rows: list[tuple[str, tuple[float, float] | None]], path: Path) -> None:
    """The paper's Table 4 as bars (mean and std over seeds)."""
    rows = [(label, stat) for label, stat in rows if stat]
    fig = _figure(7, 3.6)
    ax = fig.subplots()
    bars = ax.bar(range(len(rows)), [s[0] for _, s in rows], yerr=[s[1] for _, s in rows], capsize=3,
                  color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
    low = min(s[0] - s[1] for _, s in rows)
    high = max(s[0] + s[1] for _, s in rows)
    ax.set_ylim(low - 0.5 * (high - low + 0.2), high + 0.3 * (high - low + 0.2))
    ax.set_xticks(range(len(rows)), [label for label, _ in rows], rotation=25, ha="right", fontsize=7)
    ax.set(ylabel="top-1 (%)", title="Ablation, resnet18 W2A4 (paper Table 4)")
    save_png(fig, str(path))


def grouped_bars(panels: list[tuple[str, list[str], dict[str, list[list[float]]]]], path: Path,
                 ylabel: str = "top-1 (%)", percent: bool = True) -> None:
    """Panels (title, groups, series -> each group's values) in a grid of two columns: per group a
    bar per series at its values' mean, each value (a seed) a dot on it. `percent`: a top-1 axis
    up to 100 (else from 0, or the most negative value with a line at zero, to the largest)."""
    import statistics

    fig, axes = _panel_grid(len(panels))
    for ax, (title, groups, series) in zip(axes, panels):
        width = 0.8 / max(1, len(series))
        for k, (name, values) in enumerate(series.items()):
            xs = [i - 0.4 + width * (k + 0.5) for i in range(len(groups))]
            means = [statistics.fmean(v) if v else 0.0 for v in values]
            ax.bar(xs, means, width, color=f"C{k}", label=name)
            for x, v in zip(xs, values):
                ax.plot([x] * len(v), v, "k.", ms=3)
        ax.set_xticks(range(len(groups)), groups, fontsize=8)
        values = [x for v in series.values() for g in v for x in g]
        if percent:
            ax.set_ylim(max(0, min(values, default=0) - 5), 100)
        else:
            low, high = min([0, *values]), max([0, *values])
            ax.set_ylim(1.1 * low, 1.1 * high if high > 0 else 1)
            if low < 0:         # signed values (differences): where the sign changes
                ax.axhline(0, color="k", lw=0.8)
        ax.set(title=title, ylabel=ylabel)
    handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
    if handles:     # one legend above the panels, clear of every bar
        fig.legend(handles.values(), handles.keys(), loc="outside upper center", ncols=len(handles), fontsize=7)
    save_png(fig, str(path))


def budget_sweep(records: list[dict], methods: tuple[str, ...], final_loss, path: Path) -> None:
    """make bench-sweep: top-1 and final reconstruction loss against the weight-stage iterations
    (a log axis: the budgets grow by 4-5x), a line per method through the one seed measured at
    every budget (its lowest), the other seeds as crosses beside it, so a budget's extra
    seeds never bend the line. A method keeps its colour on every checkpoint; rows of another
    checkpoint ('method (checkpoint ...)') are dashed."""
    fig = _figure(10, 4.6)
    top, loss = fig.subplots(1, 2)
    bases = list(dict.fromkeys(m.partition(" (checkpoint")[0] for m in methods))
    crosses = False
    for method in methods:
        mine = [r for r in records if r["method"] == method]
        if not mine:
            continue
        first = min(r["seed"] for r in mine)
        base, _, other = method.partition(" (checkpoint")
        colour = f"C{bases.index(base)}"
        for ax, value in ((top, lambda r: r["fake_quant"]), (loss, final_loss)):
            line = sorted((r["budget"]["iters"], value(r)) for r in mine if r["seed"] == first)
            ax.plot(*zip(*line), marker="o", ms=4, lw=1, color=colour, ls="--" if other else "-",
                    mfc="white" if other else None, label=method if first == 0 else f"{method}, seed {first}")
            extra = [(r["budget"]["iters"], value(r)) for r in mine if r["seed"] != first]
            if extra:
                ax.plot(*zip(*extra), ls="none", marker="x", ms=5, color=colour)
                crosses = True
    if crosses:
        top.plot([], [], "kx", ls="none", label="other seeds, in the method's colour")
    floats = sorted({r["float"] for r in records}, reverse=True)     # one per checkpoint
    for value, style in zip(floats, (":", "-.", "--")):
        top.axhline(value, color="k", ls=style, lw=1, label="float" if len(floats) == 1 else f"float {value:.2f}")
    top.set(ylabel="top-1 (%)", title="top-1 against budget")
    loss.set(yscale="log", ylabel="final loss, summed over blocks", title="reconstruction loss against budget")
    budgets = sorted({r["budget"]["iters"] for r in records})
    for ax in (top, loss):
        ax.set_xscale("log")
        ax.set_xticks(budgets, [f"{i:,}" for i in budgets])
        ax.minorticks_off()
        ax.set_xlabel("weight-stage iterations per block")
    handles, labels = top.get_legend_handles_labels()
    if handles:         # one legend under both panels, clear of the lines
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=7, frameon=False)
    save_png(fig, str(path))


def parity(rows: list[dict], columns: list[tuple[str, str]], path: Path) -> None:
    """make bench-parity: per setting (method, bits), a bar per (implementation, grid) column at
    its seeds' mean, each seed a dot on it; a panel per bit setting."""
    import statistics

    panels = list(dict.fromkeys(r["bits"] for r in rows))
    fig, axes = _panel_grid(len(panels))
    for ax, bits in zip(axes, panels):
        mine = [r for r in rows if r["bits"] == bits]
        width = 0.8 / len(columns)
        for k, column in enumerate(columns):
            for i, row in enumerate(mine):
                if not row[column]:
                    continue
                x = i - 0.4 + width * (k + 0.5)
                ax.bar(x, statistics.fmean(row[column]), width, color=f"C{k}",
                       label=f"{column[0]}, {column[1]} grid" if not any(r[column] for r in mine[:i]) else None)
                ax.plot([x] * len(row[column]), row[column], "k.", ms=3)
        ax.set_xticks(range(len(mine)), [r["method"] for r in mine])
        low = min((v for r in mine for c in columns for v in r[c]), default=0)
        ax.set_ylim(max(0, low - 5), 100)
        ax.set(title=f"resnet18 {bits}", ylabel="top-1 (%)")
    handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside upper center",
                   ncols=min(3 if len(panels) > 1 else 2, len(handles)), fontsize=7)
    save_png(fig, str(path))
