"""The ``pyioso`` command line.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and
sets ``run``; SUBCOMMANDS lists them, so adding a subcommand means writing one function and
naming it there. Bad input surfaces as PyiosoError, printed as one line with exit status 2.
"""

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from golden.errors import PyiosoError
from pyioso import output
from pyioso.cli import calibration
from pyioso.models import cost, tv, zoo

FORMATS = ("table", "csv", "json")
_TABLE5_NOTE = (
    "note: the paper's Tables 12/13 leave out layers (ResNet-18's stem and 1x1 downsample\n"
    "convs, MobileNetV2's stem and 1x1 projection convs), and Table 12 gives ResNet-18's\n"
    "stages 2-4 two 3x3 convs with C/2 inputs each where torchvision has one. pyioso counts\n"
    "every Conv2d and Linear, so its totals are higher. The paper used 3 ISG groups."
)


# ---------------------------------------------------------------- pyioso layers


def _layer_record(layer: zoo.LayerInfo) -> dict:
    return {
        "path": layer.path, "kind": layer.kind,
        "h_in": layer.h_in, "w_in": layer.w_in, "c_in": layer.c_in, "c_out": layer.c_out,
        "kh": layer.kernel[0], "kw": layer.kernel[1],
        "stride_h": layer.stride[0], "stride_w": layer.stride[1],
        "pad_h": layer.padding[0], "pad_w": layer.padding[1],
        "dil_h": layer.dilation[0], "dil_w": layer.dilation[1],
        "groups": layer.groups, "h_out": layer.h_out, "w_out": layer.w_out,
    }


def _layer_cells(layer: zoo.LayerInfo) -> list[object]:
    return [
        f"{layer.h_in}x{layer.w_in}x{layer.c_in}", f"{layer.h_out}x{layer.w_out}x{layer.c_out}",
        output.pair(layer.kernel), output.pair(layer.stride), output.pair(layer.padding), output.pair(layer.dilation), layer.groups,
    ]


_LAYER_HEADERS = ["in HxWxC", "out HxWxC", "kernel", "stride", "pad", "dilation", "groups"]


def _print_named_layers(args: argparse.Namespace, names: Sequence[str]) -> None:
    """Rows for layers given by alias or NET:PATH (--aliases, --layer)."""
    rows = [(name, *zoo.resolve_layer(name, args.size)) for name in names]
    if args.format == "table":
        headers = ["name", "layer", "kind", *_LAYER_HEADERS]
        print(output.table(headers, [[a, f"{n}:{l.path}", l.kind, *_layer_cells(l)] for a, n, l in rows], left=3))
        return
    records = [{"name": name, "net": net, **_layer_record(layer)} for name, net, layer in rows]
    if args.format == "csv":
        output.print_csv(records)
    else:
        output.print_json({"size": args.size, "layers": records})


def _run_layers(args: argparse.Namespace) -> None:
    if args.aliases or args.layer:
        _print_named_layers(args, list(zoo.aliases()) if args.aliases else [args.layer])
        return
    net = tv.check_network(args.net)
    layers = zoo.layers(net, args.size)
    if args.format == "table":
        headers = ["#", "layer", "kind", *_LAYER_HEADERS]
        print(output.table(headers, [[i, l.path, l.kind, *_layer_cells(l)] for i, l in enumerate(layers)], left=3))
        return
    records = [{"index": i, **_layer_record(l)} for i, l in enumerate(layers)]
    if args.format == "csv":
        output.print_csv(records)
    else:
        output.print_json({"net": net, "size": args.size, "layers": records})


def _add_layers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "layers",
        help="list a network's conv/FC layers and their shapes",
        description=(
            "List every Conv2d and Linear layer of a network in execution order, with the input\n"
            "and output shapes it sees for a 1x3xSIZExSIZE image, its kernel, stride, padding,\n"
            "dilation, groups and kind (conv, depthwise or fc). Layers are named by their\n"
            "torchvision module path; any layer can be given as NET:PATH, and a few have short\n"
            "aliases (see --aliases). --layer shows one layer given either way."
        ),
        epilog=zoo.networks_help() + (
            "\n\nexamples:\n"
            "  pyioso layers --net resnet18\n"
            "  pyioso layers --net mobilenet_v2 --size 160 --format csv > mbv2.csv\n"
            "  pyioso layers --aliases\n"
            "  pyioso layers --layer resnet50_l3\n"
            "  pyioso layers --layer resnet18:layer2.0.downsample.0"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--net", metavar="NAME", help="network to list (see 'networks' below)")
    what.add_argument("--aliases", action="store_true", help="list the layer aliases (e.g. resnet50_l3) instead")
    what.add_argument("--layer", metavar="NAME", help="show one layer, by alias or as NET:PATH")
    parser.add_argument("--size", type=int, default=224, help="input image height and width (default: 224)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.set_defaults(run=_run_layers)


# ---------------------------------------------------------------- pyioso cost


def _cost_record(index: int, row: cost.LayerCost) -> dict:
    layer = row.layer
    return {
        "index": index, "path": layer.path, "kind": layer.kind,
        "oc": layer.c_out, "w": layer.w_out, "h": layer.h_out, "ic": layer.c_in_per_group,
        "fx": layer.kernel[1], "fy": layer.kernel[0], "outputs": row.outputs, "muls": row.muls,
        "adds": row.adds, "ops": row.ops, "isg_ops": row.isg_ops, "total_ops": row.total, "isg_ratio": row.ratio,
    }


def _totals_record(result: cost.NetworkCost) -> dict:
    return {
        "ops": result.ops, "isg_ops": result.isg_ops, "total_ops": result.total, "isg_ratio": result.ratio,
        "giga_ops": result.ops / 1e9, "giga_isg_ops": result.isg_ops / 1e9, "giga_total_ops": result.total / 1e9,
    }


_PAPER_KEYS = ("label", "giga_ops", "giga_isg_ops", "giga_total_ops", "isg_ratio_percent")


def _paper_record(net: str) -> dict | None:
    paper = cost.PAPER_TABLE5.get(net)
    if paper is None:
        return None
    return dict(zip(_PAPER_KEYS, (paper.label, paper.baseline, paper.isg, paper.total, paper.ratio_percent)))


def _paper_cells(paper: cost.PaperRow | None) -> list[str]:
    """Table 5 row as table cells (baseline, ISG, total, ratio); dashes where the paper has none."""
    if paper is None:
        return ["-"] * 4
    return [f"{paper.baseline:.3f}", f"{paper.isg:.3f}", f"{paper.total:.3f}", f"{paper.ratio_percent:.2f}%"]


def _print_cost_table(result: cost.NetworkCost) -> None:
    headers = ["#", "layer", "kind", "oc", "w", "h", "ic", "fx", "fy",
               "outputs", "mul", "sum", "ops", "ISG ops", "total ops", "ISG ratio"]
    rows = [
        [i, r.layer.path, r.layer.kind, r.layer.c_out, r.layer.w_out, r.layer.h_out, r.layer.c_in_per_group,
         r.layer.kernel[1], r.layer.kernel[0], output.fmt_int(r.outputs), output.fmt_int(r.muls), output.fmt_int(r.adds),
         output.fmt_int(r.ops), output.fmt_int(r.isg_ops), output.fmt_int(r.total), output.percent(r.ratio)]
        for i, r in enumerate(result.layers)
    ]
    rows.append(["", "total", "", "", "", "", "", "", "", "", "", "",
                 output.fmt_int(result.ops), output.fmt_int(result.isg_ops), output.fmt_int(result.total), output.percent(result.ratio)])
    print(f"{result.net}: integer operations per image ({result.size}x{result.size}, {result.groups} ISG groups)\n")
    print(output.table(headers, rows, left=3))
    print()
    summary = [["pyioso", output.giga(result.ops), output.giga(result.isg_ops), output.giga(result.total), output.percent(result.ratio)]]
    paper = cost.PAPER_TABLE5.get(result.net)
    if paper is not None:
        summary.append([f"paper Table 5 ({paper.label})", *_paper_cells(paper)])
    print(output.table(["giga ops", "baseline", "ISG", "total", "ISG ratio"], summary, left=1))
    if paper is not None:
        print("\n" + _TABLE5_NOTE)


def _plot_layers(result: cost.NetworkCost, path: str) -> None:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    colors = {"conv": "tab:blue", "depthwise": "tab:orange", "fc": "tab:green"}
    figure = Figure(figsize=(max(6.0, 0.18 * len(result.layers)), 4.0), layout="constrained")
    axes = figure.add_subplot()
    axes.bar(range(len(result.layers)), [100 * r.ratio for r in result.layers],
             color=[colors[r.layer.kind] for r in result.layers])
    mean = axes.axhline(100 * result.ratio, color="black", linestyle="--", linewidth=1,
                        label=f"network: {output.percent(result.ratio)}")
    kinds = {r.layer.kind for r in result.layers}
    axes.set(xlabel="layer index (execution order, see `pyioso cost` table)", ylabel="ISG ops / baseline ops (%)",
             title=f"{result.net}: ISG overhead per layer ({result.groups} groups, {result.size}x{result.size})")
    axes.legend(handles=[mean, *(Patch(color=c, label="depthwise (no ISG)" if k == "depthwise" else k)
                                        for k, c in colors.items() if k in kinds)])
    output.save_png(figure, path)


def _plot_networks(results: Sequence[cost.NetworkCost], path: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 4.0), layout="constrained")
    axes = figure.add_subplot()
    positions = range(len(results))
    axes.bar([p - 0.2 for p in positions], [100 * r.ratio for r in results], width=0.4, label="pyioso")
    papers = [(p, cost.PAPER_TABLE5[r.net].ratio_percent) for p, r in zip(positions, results)
              if r.net in cost.PAPER_TABLE5]
    axes.bar([p + 0.2 for p, _ in papers], [v for _, v in papers], width=0.4, label="paper Table 5 (3 groups)")
    axes.set_xticks(list(positions), [r.net for r in results], rotation=30, ha="right")
    axes.set(ylabel="ISG ops / baseline ops (%)", title=f"ISG overhead per network ({results[0].groups} groups)")
    axes.legend()
    output.save_png(figure, path)


def _run_cost_all(args: argparse.Namespace) -> None:
    results = [cost.network_cost(net, args.size, args.groups) for net in zoo.networks()]
    if args.format == "table":
        headers = ["network", "layers", "baseline G", "ISG G", "total G", "ISG ratio",
                   "paper", "baseline G", "ISG G", "total G", "ISG ratio"]
        papers = [cost.PAPER_TABLE5.get(r.net) for r in results]
        rows = [[r.net, len(r.layers), output.giga(r.ops), output.giga(r.isg_ops), output.giga(r.total), output.percent(r.ratio),
                 paper.label if paper else "-", *_paper_cells(paper)] for r, paper in zip(results, papers)]
        print(f"integer operations per image, pyioso ({args.size}x{args.size}, {args.groups} ISG groups) "
              "beside the paper's Table 5 (224x224, 3 groups)\n")
        print(output.table(headers, rows, left=1))
        print("\n" + _TABLE5_NOTE)
    elif args.format == "csv":
        records = []
        for r in results:
            paper = _paper_record(r.net) or dict.fromkeys(_PAPER_KEYS, "")
            records.append({"net": r.net, "layers": len(r.layers), **_totals_record(r),
                            **{f"paper_{key}": value for key, value in paper.items()}})
        output.print_csv(records)
    else:
        output.print_json({"size": args.size, "groups": args.groups, "networks": [
            {"net": r.net, "layers": len(r.layers), "totals": _totals_record(r), "paper": _paper_record(r.net)}
            for r in results]})
    if args.plot:
        _plot_networks(results, args.plot)


def _run_cost(args: argparse.Namespace) -> None:
    if args.plot:
        output.check_png_path(args.plot)
    if args.net.strip().lower() == "all":
        _run_cost_all(args)
        return
    result = cost.network_cost(args.net, args.size, args.groups)
    if args.format == "table":
        _print_cost_table(result)
    elif args.format == "csv":
        records = [_cost_record(i, r) for i, r in enumerate(result.layers)]
        total = dict.fromkeys(records[0], "")
        total.update(path="total", ops=result.ops, isg_ops=result.isg_ops, total_ops=result.total,
                     isg_ratio=result.ratio)
        output.print_csv([*records, total])
    else:
        output.print_json({"net": result.net, "size": result.size, "groups": result.groups,
                     "layers": [_cost_record(i, r) for i, r in enumerate(result.layers)],
                     "totals": _totals_record(result), "paper": _paper_record(result.net)})
    if args.plot:
        _plot_layers(result, args.plot)


def _add_cost(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cost",
        help="integer-operation cost with and without ISG (paper Sec. 4.4, Table 5)",
        description=(
            "Count the integer operations of every conv/FC layer with the paper's rule\n"
            "(Sec. 4.4, App. F): each output feature takes ic*fx*fy multiplications and\n"
            "ic*fx*fy-1 additions (ic = input channels per conv group). ISG adds one shift and\n"
            "one addition per output feature for each of the GROUPS-1 groups whose scale is\n"
            "not 1; depthwise layers need no ISG. Prints the per-layer table, the totals in\n"
            "giga operations with the ISG overhead ratio, and the paper's Table 5 row for the\n"
            "networks it reports."
        ),
        epilog=zoo.networks_help(", or 'all' (the paper's MnasNet-2.0 is mnasnet2_0)") + (
            "\n\nexamples:\n"
            "  pyioso cost --net resnet18\n"
            "  pyioso cost --net all\n"
            "  pyioso cost --net mobilenet_v2 --groups 1 --format json\n"
            "  pyioso cost --net resnet50 --plot resnet50_isg.png"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--net", metavar="NAME", required=True, help="network, or 'all' for a summary of every network")
    parser.add_argument("--size", type=int, default=224, help="input image height and width (default: 224)")
    parser.add_argument("--groups", type=int, default=3,
                        help="ISG groups per layer, 1 = no ISG (default: 3, as in the paper)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also save a bar chart of the ISG overhead ratio per layer (per network with --net all)")
    parser.set_defaults(run=_run_cost)


# ---------------------------------------------------------------- pyioso golden


def _run_golden(args: argparse.Namespace) -> None:
    from pyioso.cli import golden_layer

    report = golden_layer.run_layer(args.layer, args.wbits, args.abits, args.images, args.seed)
    path = os.path.join(args.out, args.layer, "report.json")
    output.write_json(path, report)
    print(golden_layer.summary(report))
    print(f"report: {path}")


def _add_golden(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "golden",
        help="run one named layer through the bit-exact golden model and check it",
        description=(
            "Build a named conv layer of a seeded torchvision network as an integer layer\n"
            "(input, weights and output quantized with the MSE observer, BN folded, a valid\n"
            "3-group ISG split with n=4, fixed-point tables per ARCHITECTURE.md), run it through\n"
            "golden on Fashion-MNIST test photos, and report golden's speed, its agreement with the\n"
            "fake-quant layer and the spec's error bound, the SQNR, and the layer's cost row."
        ),
        epilog="examples:\n  pyioso golden --layer resnet50_l3\n"
               "  pyioso golden --layer resnet18:layer2.0.conv1 --wbits 2 --abits 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--layer", required=True, help="alias (pyioso layers --aliases) or NET:PATH")
    parser.add_argument("--wbits", type=int, default=4, help="weight bits, 2..8 (default: 4)")
    parser.add_argument("--abits", type=int, default=4, help="activation bits, 2..8 (default: 4)")
    parser.add_argument("--images", type=int, default=8, help="batch of Fashion-MNIST test images (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and images (default: 0)")
    parser.add_argument("--out", default="build/golden", help="report folder (default: build/golden)")
    parser.set_defaults(run=_run_golden)


# ---------------------------------------------------------------- entry point

SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_layers, _add_cost, _add_golden, *calibration.COMMANDS)


class _Parser(argparse.ArgumentParser):
    """A bad command line is a PyiosoError like any other bad input: one line, exit status 2."""

    def error(self, message: str):
        raise PyiosoError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pyioso",
        description="IOSO post-training quantization: calibrate, export and evaluate integer networks; layers, integer-op costs, golden runs.",
        epilog="run 'pyioso COMMAND --help' for a command's options and examples",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 on bad input, with a one-line message on stderr)."""
    try:
        args = build_parser().parse_args(argv)
        args.run(args)
    except PyiosoError as err:
        print(f"pyioso: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:        # Ctrl-C: what was kept, not a traceback
        print(f"pyioso: {err or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`pyioso ... | head`): stop quietly like other Unix tools, and
        # point stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0
