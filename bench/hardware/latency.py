"""Latency per layer: the cycle model over every conv/FC of a network, and RTL runs beside it.

The model covers every layer of the zoo at any size in milliseconds; the RTL runs every conv/FC
layer of NETWORKS at 224 px on the product build (as `make sim-net` does: each fed the golden
network's codes, checked bit for bit) and the paper's Table 11 layer on the build without the
IOSO unit, and the report lists the model's count next to the RTL's for each.
"""

from __future__ import annotations

from dataclasses import replace

from bench.hardware.variants import BASELINE, PAPER, PRODUCT
import golden
from golden.errors import PyiosoError
from hw import cycles, geometry
from hw.params import EngineParams
from pyioso.integer import intnet, rtn
from pyioso.integer.layer_case import build_case
from pyioso.models import zoo

TABLE11_LAYER = "resnet50_l2"       # the paper's 28x28x128 input, 3x3x128x128 kernel layer
NETWORKS = ("resnet18", "resnet50")
# Whole networks, every op on the engine (the cycle model on the integer network's graph).
WHOLE_NETWORKS = ("resnet18", "resnet50", "mobilenet_v2", "mnasnet1_0", "regnet_x_600mf")
# Op kinds of the whole-network table, in its row order.
KINDS = ("first conv", "dense conv", "depthwise conv", "grouped conv", "FC", "residual add",
         "max pool", "average pool")
SIZE = 224
# `make sim`'s defaults: the counters do not depend on the codes, only on the shape.
CASE_BITS, CASE_SEED = 4, 0


def zoo_shape(info: zoo.LayerInfo) -> geometry.Shape:
    return geometry.Shape(info.h_in, info.w_in, info.c_in, info.c_out, info.kernel, info.stride,
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


def op_kind(step, net: intnet.IntNet) -> str:
    """The whole-network table's row of one integer-network step."""
    op = step.op
    if isinstance(op, golden.Conv):
        if step.inputs[0] == net.input_name:
            return "first conv"
        if step.output == net.output_name:
            return "FC"
        return "depthwise conv" if op.depthwise else "grouped conv" if op.groups > 1 else "dense conv"
    return {golden.Add: "residual add", golden.MaxPool: "max pool", golden.AvgPool: "average pool"}[type(op)]


def whole_network(net: str, params: EngineParams, size: int = SIZE) -> dict:
    """Every op of `net`'s integer network at `size` px on the engine, by the cycle model, per
    op kind: cycles, MACs, and the MAC bound (MACs / multipliers) they are measured against."""
    int_net = rtn.build(net, size, CASE_BITS, CASE_BITS, CASE_SEED, images=1)
    try:
        counts = cycles.network_cycles(int_net.steps, int_net.input_name, (1, size, size, 3), params)
    except PyiosoError as err:
        return {"net": net, "size": size, "refused": str(err)}
    kinds = {}
    for step, c in zip(int_net.steps, counts):
        row = kinds.setdefault(op_kind(step, int_net), {"ops": 0, "cycles": 0, "macs": 0})
        row["ops"], row["cycles"], row["macs"] = row["ops"] + 1, row["cycles"] + c.cycles, row["macs"] + c.macs
    multipliers = params.rows * params.cols
    for row in kinds.values():
        row["mac_bound"] = row["macs"] / multipliers
    total = {k: sum(r[k] for r in kinds.values()) for k in ("ops", "cycles", "macs", "mac_bound")}
    total["ratio"] = total["cycles"] / total["mac_bound"]
    total["milliseconds"] = total["cycles"] / cycles.CLOCK_MHZ / 1000
    return {"net": net, "size": size, "kinds": {k: kinds[k] for k in KINDS if k in kinds}, "total": total}


def _rtl_entry(layer: str, variant: str, shape: str, rep: dict) -> dict:
    """One RTL run of the report from sim/layer.py's report of it."""
    return {"layer": layer, "variant": variant, "shape": shape,
            "passes": rep["passes"], "rtl_cycles": rep["cycles"], "model_cycles": rep["model_cycles"],
            "agree": rep["model_cycles"] == rep["cycles"], "ideal_cycles": rep["ideal_cycles"],
            "utilization": rep["utilization"], "outputs_checked": rep["outputs_checked"],
            "mismatches": rep["mismatches"], "microseconds": rep["cycles"] / cycles.CLOCK_MHZ}


def simulate_layer(alias: str, variant: str, params: EngineParams) -> dict:
    """One zoo layer (seeded weights, real photos) through the RTL, as `make sim` runs it."""
    from sim import layer as sim_layer  # the Verilator toolchain, only when simulating

    shift = params.isg_shift if params.isg else 0
    case = build_case(alias, w_bits=CASE_BITS, a_bits=CASE_BITS, seed=CASE_SEED, isg_shift=shift)
    sim = sim_layer.engine_simulator(params)
    result, seconds = sim_layer.simulate(sim, case.layer, case.x)
    rep = sim_layer.report(alias, case.layer, [case.x], result, sim, seconds)
    return _rtl_entry(f"{case.net}:{case.info.path}", variant, describe(case.info), rep)


def simulate_network(net: str, params: EngineParams, variant: str, progress: bool) -> list[dict]:
    """Every conv/FC of `net` at SIZE px through the RTL, as `make sim-net` runs them: each fed
    the golden integer network's codes of the layers before it."""
    from sim import net as sim_net  # the Verilator toolchain, only when simulating

    shapes = {info.path: describe(info) for info in zoo.layers(net, SIZE)}
    runs = sim_net.golden_runs(net, SIZE, CASE_BITS, CASE_BITS, CASE_SEED)
    reports, _ = sim_net.simulate_runs(runs, params, progress)   # refused layers: the model rows say why
    return [_rtl_entry(f"{net}:{r['layer']}", variant, shapes[r["layer"]], r) for r in reports]


def latency_report(engines: dict[str, EngineParams], with_rtl: bool, progress: bool = True,
                   whole_networks: tuple[str, ...] = WHOLE_NETWORKS, whole_size: int = SIZE) -> dict:
    """latency.json: Table 11's layer on every variant (model, and RTL on the builds that run
    golden), the RTL runs with the model beside each, the per-layer tables of NETWORKS on the
    product and the baseline, and `whole_networks` at `whole_size` px with every op on the
    product build."""
    runs = []
    if with_rtl:
        runs.append(simulate_layer(TABLE11_LAYER, BASELINE, engines[BASELINE]))
        for net in NETWORKS:
            runs += simulate_network(net, engines[PRODUCT], PRODUCT, progress)
    rtl = {(r["layer"], r["variant"]): r for r in runs}
    net, info = zoo.resolve_layer(TABLE11_LAYER, SIZE)
    path = f"{net}:{info.path}"
    product = engines[PRODUCT]
    paper_lanes = (replace(product, lanes=PAPER["lanes"]) if product.cols % PAPER["lanes"] == 0
                   else None)     # an array narrower than the paper's 8 lanes: no such build
    table11 = {"layer": TABLE11_LAYER, "path": path, "shape": describe(info),
               "variants": {name: {**model_row(info, params),
                                   "rtl_cycles": rtl.get((path, name), {}).get("rtl_cycles")}
                            for name, params in engines.items()},
               "paper_lanes": {"lanes": PAPER["lanes"],
                               "cycles": model_row(info, paper_lanes).get("cycles") if paper_lanes else None}}
    networks = {}
    for net in NETWORKS:
        product, baseline = network(net, engines[PRODUCT]), network(net, engines[BASELINE])
        for row, base in zip(product["layers"], baseline["layers"]):
            run = rtl.get((f"{net}:{row['layer']}", PRODUCT), {})
            row["baseline_cycles"] = base.get("cycles")
            row["rtl_cycles"], row["rtl_mismatches"] = run.get("rtl_cycles"), run.get("mismatches")
        product["totals"]["baseline_cycles"] = baseline["totals"]["cycles"]
        networks[net] = product
    whole = {net: whole_network(net, engines[PRODUCT], whole_size) for net in whole_networks}
    return {"clock_mhz": cycles.CLOCK_MHZ, "product": PRODUCT, "baseline": BASELINE,
            "whole_networks": whole,
            "table11": table11, "rtl": runs,
            "agreement": {"runs": len(runs), "agree": sum(r["agree"] for r in runs),
                          "bit_exact": sum(not r["mismatches"] for r in runs)},
            "networks": networks}
