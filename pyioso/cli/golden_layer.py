"""The golden main job: one named layer through golden, checked against its float meaning.

Reports what a user of the integer model wants to know before any RTL exists: the layer's
shapes and bits, golden's speed, whether golden equals the fake-quant layer (and by how much it
may differ, per ARCHITECTURE §3), the quantization SQNR against the unquantized layer, and the
layer's integer-op cost row.
"""

from __future__ import annotations

import time

import torch

import golden
from pyioso.integer.layer_case import build_case
from pyioso.models import cost
from pyioso.quant.fixedpoint import rounding_slack


def _best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run_layer(name: str, w_bits: int = 4, a_bits: int = 4, batch: int = 8, seed: int = 0,
              repeat: int = 3) -> dict:
    case = build_case(name, w_bits=w_bits, a_bits=a_bits, batch=batch, seed=seed)
    fc, layer, x = case.float_layer, case.layer, case.x
    seconds = _best_time(lambda: golden.conv(x, layer), repeat)
    y = golden.conv(x, layer)
    fake = fc.output_codes(x)
    lo, hi = fc.clamp_bounds()
    deviation = (y - fc.real_code(x).clamp(lo, hi)).abs().max().item()
    bound = 0.5 + rounding_slack(fc, layer.requant.shift).max().item()
    dequant = fc.out_scale * (y - fc.out_zero_point).to(torch.float64)
    noise = (dequant - case.real_output.to(torch.float64)).pow(2).mean().item()
    signal = case.real_output.to(torch.float64).pow(2).mean().item()
    row = cost.layer_cost(case.info)
    info = case.info
    return {
        "layer": name, "net": case.net, "path": info.path,
        "shape": {"h": info.h_in, "w": info.w_in, "c_in": info.c_in, "c_out": info.c_out,
                  "kernel": list(info.kernel), "stride": list(info.stride), "padding": list(info.padding)},
        "bits": {"weights": w_bits, "activations": a_bits},
        "images": batch, "seed": seed, "input": "Fashion-MNIST test images (pyioso.data.datasets.sample_photos), seeded weights",
        "isg": {"shift": layer.isg_shift, "group_sizes": list(case.group_sizes), "codes": [0, -1, 1],
                "note": "a fixed valid split, not learned: the SQNR includes its 2^-n scale changes"},
        "tables": {"shift_F": layer.requant.shift, "activation": fc.activation},
        "outputs": y.numel(), "golden_seconds": seconds, "outputs_per_second": y.numel() / seconds,
        "equal_to_fake_quant": (y == fake).double().mean().item(),
        "max_code_difference_to_fake_quant": (y - fake).abs().max().item(),
        "max_deviation_from_real_code": deviation, "spec_bound": bound,
        "sqnr_db": 10 * torch.log10(torch.tensor(signal / noise)).item() if noise else float("inf"),
        "cost": {"outputs": row.outputs, "ops": row.ops, "isg_ops": row.isg_ops, "isg_ratio": row.ratio},
    }


def summary(report: dict) -> str:
    s, c = report["shape"], report["cost"]
    return "\n".join([
        f"{report['layer']} ({report['net']}:{report['path']}): {s['h']}x{s['w']}x{s['c_in']} -> "
        f"{s['c_out']}, kernel {s['kernel'][0]}x{s['kernel'][1]}, stride {s['stride'][0]}, "
        f"pad {s['padding'][0]}; W{report['bits']['weights']}A{report['bits']['activations']}, "
        f"ISG groups {report['isg']['group_sizes']} (n={report['isg']['shift']}), F={report['tables']['shift_F']}",
        f"golden: {report['outputs']:,} outputs ({report['images']} images) in "
        f"{report['golden_seconds'] * 1e3:.1f} ms = {report['outputs_per_second']:,.0f} outputs/s",
        f"equals the fake-quant layer on {100 * report['equal_to_fake_quant']:.4f}% of outputs "
        f"(max difference {report['max_code_difference_to_fake_quant']} code); "
        f"max |y - rho| = {report['max_deviation_from_real_code']:.4f} <= spec bound {report['spec_bound']:.4f}",
        f"SQNR against the unquantized layer: {report['sqnr_db']:.2f} dB",
        f"cost (paper rule, per image): {c['ops']:,} ops + {c['isg_ops']:,} ISG ops ({100 * c['isg_ratio']:.2f}%)",
    ])
