"""Latency per layer: the cycle model over every conv/FC of a network, and RTL runs beside it.

The model covers every layer of the zoo at any size in milliseconds; the RTL runs a fixed set of
layers (the paper's Table 11 layer on the builds with and without the IOSO unit, and each ResNet
stage's typical layer), each checked bit for bit against golden like `make sim`, and the report
lists every one with the model's count next to the RTL's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tqdm import tqdm

from hw import driver
from hw.params import EngineParams
from hw.report import cycles
from hw.report.variants import BASELINE, PAPER, PRODUCT
from pyioso import zoo
from pyioso.errors import PyiosoError
from pyioso.layer_case import build_case

TABLE11_LAYER = "resnet50_l2"       # the paper's 28x28x128 input, 3x3x128x128 kernel layer
NETWORKS = ("resnet18", "resnet50")
SIZE = 224
# `make sim`'s defaults: the counters do not depend on the codes, only on the shape.
CASE_BITS, CASE_SEED = 4, 0


def zoo_shape(info: zoo.LayerInfo) -> driver.Shape:
    return driver.Shape(info.h_in, info.w_in, info.c_in, info.c_out, info.kernel, info.stride,
                        info.padding, info.dilation, info.groups)


def describe(info: zoo.LayerInfo) -> str:
    if info.kind == "fc":
        return f"FC {info.c_in}->{info.c_out}"
    return (f"{info.h_in}x{info.w_in}x{info.c_in}->{info.c_out} k{info.kernel[0]}"
            f" s{info.stride[0]}")


def model_row(info: zoo.LayerInfo, params: EngineParams) -> dict:
    """One layer's cycles from the model, or why the engine cannot run it."""
    row = {"layer": info.path, "shape": describe(info)}
    try:
        c = cycles.layer_cycles(zoo_shape(info), params)
    except PyiosoError as err:
        return {**row, "refused": str(err)}
    return {**row, "passes": c.passes, "cycles": c.cycles, "ideal_cycles": c.ideal,
            "macs": c.macs, "utilization": c.utilization, "mac_utilization": c.mac_utilization,
            "microseconds": c.microseconds}


def network(net: str, params: EngineParams, size: int = SIZE) -> dict:
    """Every conv/FC of `net` at `size` px through the model, with totals."""
    rows = [model_row(info, params) for info in zoo.layers(net, size)]
    run = [r for r in rows if "cycles" in r]
    total = sum(r["cycles"] for r in run)
    ideal = sum(r["ideal_cycles"] for r in run)
    macs = sum(r["macs"] for r in run)
    return {"net": net, "size": size, "layers": rows,
            "totals": {"layers": len(run), "refused": len(rows) - len(run), "cycles": total,
                       "ideal_cycles": ideal, "utilization": ideal / total,
                       "mac_utilization": macs / (total * params.rows * params.cols),
                       "microseconds": total / cycles.CLOCK_MHZ}}


@dataclass(frozen=True)
class RtlRun:
    layer: str      # a zoo alias
    variant: str    # the engine build it runs on


def rtl_runs() -> list[RtlRun]:
    """The layers the report simulates: Table 11's on the builds with and without the IOSO
    unit, every ResNet stage layer on the product."""
    stage_layers = [a for a in zoo.aliases() if a.split("_")[0] in NETWORKS]
    return [RtlRun(TABLE11_LAYER, BASELINE)] + [RtlRun(a, PRODUCT) for a in stage_layers]


def simulate(run: RtlRun, params: EngineParams) -> dict:
    """One layer through the RTL (sim/layer.py): outputs against golden, counter and model."""
    from sim import layer as sim_layer      # the Verilator toolchain, only when simulating

    shift = params.isg_shift if params.isg else 0
    case = build_case(run.layer, w_bits=CASE_BITS, a_bits=CASE_BITS, seed=CASE_SEED,
                      isg_shift=shift)
    sim = sim_layer.engine_simulator(params)
    result, seconds = sim_layer.simulate(sim, case.layer, case.x)
    rep = sim_layer.report(run.layer, case.layer, case.x, result, params, seconds)
    return {"layer": run.layer, "variant": run.variant, "shape": describe(case.info),
            "passes": rep["passes"], "rtl_cycles": rep["cycles"], "model_cycles": rep["model_cycles"],
            "agree": rep["model_cycles"] == rep["cycles"], "ideal_cycles": rep["ideal_cycles"],
            "utilization": rep["utilization"], "outputs_checked": rep["outputs_checked"],
            "mismatches": rep["mismatches"], "microseconds": rep["cycles"] / cycles.CLOCK_MHZ}


def latency_report(engines: dict[str, EngineParams], with_rtl: bool, progress: bool = True) -> dict:
    """latency.json: Table 11's layer on every variant (model, and RTL on the builds that run
    golden), the RTL runs with the model beside each, and the per-layer tables of NETWORKS on
    the product and the baseline."""
    runs = []
    if with_rtl:
        for run in tqdm(rtl_runs(), desc="RTL layers", unit="layer", disable=not progress):
            runs.append(simulate(run, engines[run.variant]))
    rtl = {(r["layer"], r["variant"]): r["rtl_cycles"] for r in runs}
    net, info = zoo.resolve_layer(TABLE11_LAYER, SIZE)
    paper_lanes = replace(engines[PRODUCT], lanes=PAPER["lanes"])
    table11 = {"layer": TABLE11_LAYER, "path": f"{net}:{info.path}", "shape": describe(info),
               "variants": {name: {**model_row(info, params),
                                   "rtl_cycles": rtl.get((TABLE11_LAYER, name))}
                            for name, params in engines.items()},
               "paper_lanes": {"lanes": PAPER["lanes"],
                               "cycles": model_row(info, paper_lanes).get("cycles")}}
    networks = {}
    for net in NETWORKS:
        product, baseline = network(net, engines[PRODUCT]), network(net, engines[BASELINE])
        aliases = {path: alias for alias, (n, path) in zoo.aliases().items() if n == net}
        for row, base in zip(product["layers"], baseline["layers"]):
            row["baseline_cycles"] = base.get("cycles")
            row["rtl_cycles"] = rtl.get((aliases.get(row["layer"]), PRODUCT))
        product["totals"]["baseline_cycles"] = baseline["totals"]["cycles"]
        networks[net] = product
    return {"clock_mhz": cycles.CLOCK_MHZ, "product": PRODUCT, "baseline": BASELINE,
            "table11": table11, "rtl": runs,
            "agreement": {"runs": len(runs), "agree": sum(r["agree"] for r in runs),
                          "bit_exact": sum(not r["mismatches"] for r in runs)},
            "networks": networks}
