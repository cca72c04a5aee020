"""`make bench-toolbox`: the lecture's methods in the same pipeline, on resnet18 at 32 px.

Each study varies one calibration setting over its values, for a few methods and bit settings,
with everything else as bench-accuracy runs it (same checkpoint, calibration images drawn by the
seed, budget and test images). The cells are bench-accuracy's own (OUT/<budget>/cells), so a
study resumes per cell and takes the default value's cells from a bench-accuracy run:
- observers: the clipping range of activations and weights (minmax, EMA, MSE, KL, percentile);
- levels: ternary (TWN) and binary (XNOR-Net) weights against the uniform 2-bit grid. They export
  as 2-bit codes, so their integer networks run on golden (the "integer" columns);
- kmeans: Deep Compression's per-layer codebooks at 2, 3 and 4 bits (float, fake-quant only);
- granularity: weight scales per tensor, channel, 16-weight vector (VS-Quant) and 32-weight MX block;
- act_init: activation steps observed on the float or on the weight-quantized network (BRECQ's);
- oso_schedule: OSO learned at a constant rate or with a cosine decay to zero over each stage;
- oso_logits: OSO on the classifier (per-class logit scale and offset) or not;
- oso_last_block: OSO off the last residual block as well as the classifier, or only off the classifier;
- rounding: stochastic against nearest rounding (RTN);
- mixed: per-layer weight bits from measured sensitivity under an average-bits budget;
- qat, ternary_qat: one epoch of `pyioso finetune` (QAT with the STE) after the calibration.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.accuracy.__main__ import _weights
from bench.accuracy.cells import (FINETUNE, Budget, Cell, add_eval_images, add_run_options, bits_label,
                                  checkpoint_of, committed_records, merge_records, place, run_grid, usual_checkpoint)
from bench.accuracy.report import spread
from golden.errors import PyiosoError
from pyioso import output
from pyioso.calib import plots
from pyioso.calib.calibrate import ACT_INITS, OSO_SCHEDULES, WEIGHT_ROUNDINGS
from pyioso.cli.types import nonnegative_int, positive_int
from pyioso.models import train
from pyioso.quant.granularity import GRANULARITIES
from pyioso.quant.levels import INTEGER_LEVELS
from pyioso.quant.observers import OBSERVERS

NET = "resnet18"
LAST_BLOCK = "layer4.1.conv1,layer4.1.conv2"   # resnet18's last residual block (oso_last_block)
RECORDS = "toolbox.json"    # every recorded cell, committed beside TOOLBOX.md: a clone resumes from it


@dataclass(frozen=True)
class Study:
    """One setting varied over `values` (the first: the default, cells without that option), for
    each net, bits and method, with the `fixed` options on every cell."""

    name: str
    title: str
    settings: tuple[str, ...]       # the cell options one value sets (Config fields, or FINETUNE)
    values: tuple
    bits: tuple[tuple[int, int], ...]
    methods: tuple[str, ...]
    about: str
    labels: tuple[str, ...] = ()    # the values' column names (default: the values)
    nets: tuple[str, ...] = (NET,)
    fixed: tuple[tuple[str, object], ...] = ()
    uniform: tuple[tuple[int, int], ...] = ()   # more bits whose default cells are columns (uniform WxAy)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.labels or tuple(map(str, self.values))) + tuple(f"uniform {bits_label(*b)}" for b in self.uniform)

    def options(self, value) -> tuple[tuple[str, object], ...]:
        return self.fixed + (() if value == self.values[0] else tuple((s, value) for s in self.settings))

    def cells(self, seeds: int) -> list[Cell]:
        return [Cell(net, w, a, method, seed, self.options(value)) for seed in range(seeds) for net in self.nets
                for w, a in self.bits for method in self.methods for value in self.values] + \
            [Cell(net, w, a, method, seed, self.fixed) for seed in range(seeds) for net in self.nets
             for w, a in self.uniform for method in self.methods]

    def groups(self, records: list[dict], net: str, bits: tuple[int, int], method: str) -> list[list[dict]]:
        """A method's records per column: each value's at `bits`, then the uniform columns', on the
        seeds every column that ran holds (a default cell another study ran on more seeds would
        otherwise set a mean beside single seeds)."""
        mine = [r for r in self.records(records, net, bits) if r["method"] == method]
        found = [[r for r in mine if self.value(r) == v] for v in self.values] + \
            [[r for r in self.records(records, net, b) if r["method"] == method and self.value(r) == self.values[0]]
             for b in self.uniform]
        ran = [{r["seed"] for r in group} for group in found if group]
        seeds = set.intersection(*ran) if ran else set()
        return [[r for r in group if r["seed"] in seeds] for group in found]

    def label(self, record: dict) -> str:
        """The column a record of this study sits in."""
        if (record["w_bits"], record["a_bits"]) in self.uniform:
            return f"uniform {record['bits']}"
        return self.columns[self.values.index(self.value(record))]

    def value(self, record: dict):
        return record["options"].get(self.settings[0], self.values[0])

    def records(self, records: list[dict], net: str, bits: tuple[int, int]) -> list[dict]:
        """This study's records of `net` at `bits`: its fixed options, any of its values."""
        return [r for r in records if r["net"] == net and r["bits"] == bits_label(*bits)
                and r["method"] in self.methods and self.value(r) in self.values
                and {k: v for k, v in r["options"].items() if k not in self.settings} == dict(self.fixed)]


STUDIES = (
    Study("levels", "Ternary and binary weights", ("weight_levels",), INTEGER_LEVELS, ((2, 4),),
          ("rtn", "brecq", "brecq+ioso"),
          "`--weight-levels ternary|binary --wbits 2`: the middle layers' weights as TWN's {-1, 0, +1} x alpha "
          "(threshold 0.7 mean|W|) or XNOR-Net's {-1, +1} x mean|W| per output channel, against the uniform "
          "signed 2-bit grid (-2..1 x an MSE scale); the 8-bit stem and classifier stay uniform. The codes are "
          "fixed by the rule, so BRECQ learns only the activation steps and IOSO adds OSO and ISG around them. "
          "Both code sets are 2-bit codes: the integer networks export and run on golden (and the RTL: "
          "tests/test_api.py)."),
    Study("granularity", "Granularity: scales per tensor, channel, vector (VS-Quant) and MX block",
          ("weight_granularity",), GRANULARITIES, ((2, 4), (4, 4)), ("rtn", "brecq", "brecq+ioso"),
          "`--weight-granularity tensor|channel|vector|mx`: one weight scale per layer; per output channel (the "
          "engine's, the default); VS-Quant's unsigned 4-bit integer scale per 16 weights under the channel's "
          "float scale; an MX-like shared power-of-two scale per 32 weights. Effective bits per weight as the "
          "lecture counts them: w for tensor and channel, w + 4/16 for vector, w + 8/32 for mx. IOSO's own "
          "overhead at equal bits is its ISG groups, 2 bits per input channel per layer (under 0.01 bit per "
          "weight), so the brecq+ioso row at channel granularity is IOSO at the same effective bits as brecq. "
          "Vector and mx are fake-quant only (the engine applies one scale per output channel). Per-tensor "
          "beating per-channel for BRECQ at W2A4 comes with the signed 2-bit grid's one positive level: the "
          "per-channel MSE scales fit each channel tightly (relative squared error 0.15-0.16 against 0.16-0.71 "
          "per tensor) but leave a one-sided rounding error, its per-channel sum 0.063-0.066 of sum|w| in "
          "layer4 against 0.017-0.054 per tensor (`scripts/grid_bias.py`). A nonnegative (post-ReLU) input turns "
          "that sum into a per-channel output offset; in these runs BRECQ's 200 AdaRound steps leave layer4's "
          "weight-stage loss almost where it starts per channel (950 to 933, 2155 to 2150) and not per tensor "
          "(428 to 158, 857 to 624), while IOSO's per-channel output offset and scale correct it (brecq+ioso "
          "per channel is the best W2A4 column).",
          labels=("channel (w bits)", "tensor (w)", "vector (w + 0.25)", "mx (w + 0.25)")),
    Study("qat", "Quantization-aware training after calibration", (FINETUNE,), (0, 1), ((2, 4), (2, 2)),
          ("brecq+ioso",),
          "`pyioso finetune --run DIR --out DIR2 --epochs 1`: the calibrated network trained for one epoch of the "
          "60,000 training images (batch 64, Adam lr 1e-5, cosine) with the straight-through estimator from its "
          "calibrated codes, LSQ weight and activation steps, OSO and biases; ISG groups, bits and zero points "
          "stay, so it exports like the calibration (integer top-1 in brackets). After QAT mobilenet_v2's "
          "integer network leaves its fake-quant one more than any calibration does (W2A4: 98 % equal predictions): "
          "LSQ parks activation steps where values that recur (sparse depthwise inputs) sit exactly on a rounding "
          "tie (x / s + z exactly k + 1/2 in float32), which the fixed-point requantization rounds the other way "
          "(features.4.conv.1.0: 118 "
          "of its 125 differing codes, `scripts/layer_divergence.py`), and the fine-tuned network amplifies those "
          "one-code differences (19 % of features.9's codes against 0.35 % before QAT). Fixed since these cells ran: "
          "calibration and finetune now move such steps off their ties (pyioso/calib/ties.py, at most 0.1 %), and "
          "the same mobilenet_v2 W2A4 QAT agrees on 99.96 % (fake-quant 87.11 = integer 87.11).",
          labels=("PTQ", "PTQ + QAT (1 epoch)"), nets=(NET, "mobilenet_v2")),
    Study("ternary_qat", "Ternary weights with and without QAT", (FINETUNE,), (0, 1), ((2, 4),), ("brecq",),
          "TWN's ternary weights (`--weight-levels ternary`) calibrated with BRECQ, then one epoch of "
          "`pyioso finetune`, which learns the ternary scale alpha and moves weights across the threshold "
          "alpha/2 through the STE.",
          labels=("PTQ", "PTQ + QAT (1 epoch)"), fixed=(("weight_levels", "ternary"),)),
    Study("binary_qat", "Binary weights with and without QAT", (FINETUNE,), (0, 1), ((2, 4),), ("brecq",),
          "XNOR-Net's binary weights (`--weight-levels binary`) calibrated with BRECQ, then one epoch of "
          "`pyioso finetune`, which learns the scale alpha and flips weights across zero through the STE "
          "(the sign's gradient passed straight through inside [-alpha, alpha]).",
          labels=("PTQ", "PTQ + QAT (1 epoch)"), fixed=(("weight_levels", "binary"),)),
    Study("ttq", "Trained ternary quantization (TTQ)", (FINETUNE,), (0, 1), ((2, 4),), ("brecq",),
          "`--weight-levels ttq`, then one epoch of `pyioso finetune`: TWN's codes (threshold 0.7 mean|W| of the "
          "latent weight, recomputed every step) times a positive scale W_p or a negative one W_n, learned with "
          "TTQ's gradients (Zhu et al. 2017), per output channel rather than the paper's per layer. Before QAT "
          "W_p = W_n = TWN's alpha, so the PTQ column is TWN's network. Two scales per channel make a weight "
          "more than a code times one channel scale: the engine cannot run it, so it has no integer column "
          "(next to it, the ternary QAT study learns one scale and exports).",
          labels=("PTQ (= TWN)", "PTQ + TTQ (1 epoch)"), fixed=(("weight_levels", "ttq"),)),
    Study("kmeans", "K-means (Deep Compression) weights", ("weight_levels",), ("uniform", "kmeans"),
          ((2, 4), (3, 4), (4, 4)), ("rtn", "brecq"),
          "`--weight-levels kmeans`: each w-bit layer's weights clustered by 1-D k-means (Lloyd, linear "
          "initialization, 50 iterations) into 2^w float centroids; the weights are stored as w-bit indices plus "
          "the float codebook (2^w x 32 bits per layer). Its products are float: it is a software baseline "
          "with no integer network (no integer column), next to the uniform per-channel grid the engine runs. "
          "BRECQ keeps the clustered weights and learns the activation steps."),
    Study("mixed", "Mixed precision under a weight-memory budget", ("mixed_budget",), (0, 2.5, 3.0), ((2, 4),),
          ("rtn", "brecq", "brecq+ioso"),
          "`--mixed-budget BITS`: each middle layer's sensitivity is the KL divergence of the network's class "
          "distribution when that layer alone is rounded to 2, 3 or 4 bits (256 calibration images); a greedy "
          "allocation then narrows the layer that costs the least divergence per bit saved until the middle "
          "layers average at most BITS bits per weight (the 8-bit first and last layers are outside the budget "
          "in every column). The columns compare uniform 2-bit weights, mixed at 2.5 and 3.0 bits and uniform "
          "3-bit weights (the same memory as the 3.0 budget). Model size: resnet18's middle layers hold "
          "11,157,504 weights, 2.66 MiB at 2 bits, 3.33 MiB at 2.5 and 3.99 MiB at 3 (the 8-bit stem and "
          "classifier add 14 KiB). The budget counts parameters, so the large late "
          "layers take the narrow widths. The per-layer widths export and run on the engine (integer top-1 in "
          "brackets where recorded; tests/test_api.py runs a mixed network in RTL).",
          labels=("uniform W2", "mixed, 2.5 bits", "mixed, 3.0 bits"), uniform=((3, 4),)),
    Study("mixed_act", "Mixed-precision activations under an activation-memory budget", ("mixed_act_budget",),
          (0, 3.0, 3.5), ((4, 4),), ("rtn", "brecq", "brecq+ioso"),
          "`--mixed-act-budget BITS`: each middle tensor's sensitivity is the KL divergence of the class "
          "distribution when that tensor alone is rounded to 2, 3 or 4 bits (256 calibration images); the same "
          "greedy allocation keeps the stored tensors at most BITS bits per element of one image on average "
          "(the engine's activation memory and traffic). The classifier's 8-bit input is outside the budget. "
          "The columns compare uniform 4-bit activations, mixed at 3.0 and 3.5 bits and uniform 3-bit "
          "activations (the memory of the 3.0 budget), all with 4-bit weights. The per-tensor widths export "
          "and run on the engine (tests/test_api.py runs one in RTL).",
          labels=("uniform A4", "mixed, 3.0 bits", "mixed, 3.5 bits"), uniform=((4, 3),)),
    Study("observers", "Clipping: the range observer", ("observer", "weight_observer"),
          ("mse", *(o for o in OBSERVERS if o != "mse")), ((4, 4), (8, 8)), ("rtn", "brecq"),
          "`--observer NAME --weight-observer NAME`: the clipping range of every activation (per tensor) and "
          "weight (per output channel). minmax: no clipping; ema: moving average (momentum 0.1) of each "
          "image's min and max; mse: BRECQ's L_2.4 search (the default); kl: TensorRT's entropy threshold "
          "(2,048 bins); percentile: 99.99th. RTN keeps the observer's ranges; BRECQ then learns the "
          "activation steps from them. KL's collapse at W4A4 is its activation ranges (RTN with KL on the "
          "activations alone: 15.10 %, on the weights alone: 81.53 %): its histogram's first bin holds every ReLU "
          "zero, and where they are over about 55 % of a tensor (layer3.1 on, at 1x1 or 2x2 maps) 16 levels fit "
          "that mass best with a threshold near zero (layer4.0.conv1: 0.055 where MSE keeps 5.97; 6.59 on the "
          "nonzero values alone): `scripts/kl_thresholds.py` prints it per tensor. TensorRT's method targets 8 "
          "bits (128 levels), where it holds (W8A8 below)."),
    Study("act_init", "Where the activation steps start: the float or the weight-quantized network",
          ("act_init",), ACT_INITS, ((2, 4), (4, 4)), ("brecq", "brecq+ioso"),
          "`--act-init quantized`: the activation steps are observed again before the activation stage, on 64 "
          "calibration images through the weight-quantized network with every coding before them applied, as "
          "BRECQ's main_imagenet.py does; the default observes them once on the float network. On BRECQ's own "
          "grid this closes our brecq's gap to BRECQ's code (docs/parity-brecq-8-act-init). Here it runs on "
          "the engine's grid and quantized tensors, and for IOSO, whose activation stage also learns OSO: "
          "whether BRECQ's init should be the default. Quantized minus float, paired by seed (checkpoint 403f423b, "
          "3 seeds): at the quick budget (docs/TOOLBOX.md) brecq W2A4 +0.34 ± 0.96 pp (2 of 3 higher), brecq+ioso "
          "W2A4 +0.92 ± 0.64 (3 of 3), W4A4 +0.34 ± 0.19 and +0.31 ± 0.30 (3 of 3 each); at 5,000/1,250 "
          "(docs/i5000/TOOLBOX.md) brecq W2A4 +0.23 ± 0.06 (3 of 3) but brecq+ioso W2A4 -2.15 ± 1.13 (0 of 3). "
          "So the default stays float: BRECQ's init helps BRECQ and hurts IOSO once the budget converges."),
    Study("oso_schedule", "How OSO learns: a constant rate or a cosine decay to zero",
          ("oso_schedule",), OSO_SCHEDULES, ((2, 4), (4, 4)), ("brecq+ioso", "qdrop+ioso"),
          "`--oso-schedule cosine`: OSO's output scales and offsets learn at --lr decaying to zero over each stage, "
          "as the activation steps do; the default holds them at --lr throughout, with the rounding variables "
          "(the paper trains them together and names no schedule). Rounding has AdaRound's annealed regularizer "
          "to settle it; the continuous OSO parameters have nothing, so at a constant rate they end wherever the "
          "last mini-batches pushed them. Whether that is why IOSO falls behind BRECQ once the budget "
          "converges (docs/i5000, docs/SWEEP.md): hardly. At 5,000/1,250 (docs/i5000/TOOLBOX.md, checkpoint "
          "403f423b, W2A4) cosine minus constant, paired by seed, is +0.17 ± 0.26 pp (+0.47, +0.05, -0.02), "
          "with every block's reconstruction loss ending higher on seed 0, and brecq+ioso stays below brecq "
          "(89.01 ± 0.35 against 89.20 ± 0.11). What does cost IOSO is OSO on the classifier (oso_logits "
          "below). The default stays constant."),
    Study("oso_logits", "OSO on the classifier or not", ("oso_logits",), (True, False),
          ((2, 4), (4, 4), (3, 3), (2, 2)),
          ("brecq+ioso", "qdrop+ioso"),
          "`--no-oso-logits`: OSO on every conv and FC but the classifier. On the classifier OSO is a per-class "
          "scale and offset of the logits, fitted to their reconstruction loss; whether that is what costs IOSO "
          "top-1 at converged budgets (docs/i5000). It is: `scripts/oso_reset.py` on a kept brecq+ioso W4A4 "
          "calibration at 5,000/1,250 (seed 0, 88.19%) gives 89.80% with the classifier's OSO reset to identity, "
          "-0.36 to +0.21 pp for any other layer's. Calibrated without it (checkpoint 403f423b, 5,000/1,250), "
          "paired by seed: brecq+ioso W2A4 +0.72 ± 0.74 pp (3 of 3), qdrop+ioso W2A4 +0.16 ± 0.71 (1 of 3), "
          "W4A4 +1.05 ± 0.86 (2 of 2) and +0.38 ± 1.17 (1 of 2), W3A3 +0.78 ± 0.87 (3 of 3) and +0.81 ± 0.78 (2 of 3), W2A2 +3.19 ± 0.70 "
          "and +1.94 ± 0.82 (3 of 3 each); brecq+ioso W2A4 then leads brecq by +0.37 ± 0.24 (3 of 3) and at "
          "W2A2 by +1.88 ± 3.26 (2 of 3; brecq's seeds spread 6 pp) and ties it at W4A4 (+0.11 ± 0.04), but not at "
          "W3A3 (-0.54 ± 1.36, 1 of 3), where qdrop+ioso ties qdrop (-0.09 ± 0.25; W4A4 -0.06 ± 0.07). At the "
          "quick budget (docs/TOOLBOX.md) it is neutral at W2A4, W4A4 and W3A3 (-0.14 to +0.37 pp, paired "
          "means within their seeds' spread) and helps qdrop+ioso at W2A2 (+1.37 ± 0.20, 3 of 3). At "
          "20,000/5,000 (docs/i20000, seed 0) brecq+ioso reaches 89.36% with it and 89.51% without, "
          "brecq 89.64% (docs/SWEEP.md). The default keeps OSO on the classifier, as the paper does (docs/CALIBRATION.md).",
          labels=("OSO on the classifier", "not on the classifier")),
    Study("oso_last_block", "OSO off the last block as well as the classifier", ("oso_off",), ((), LAST_BLOCK),
          ((2, 2),), ("brecq+ioso", "qdrop+ioso"),
          "`--no-oso-logits --no-oso-on layer4.1.conv1,layer4.1.conv2`: OSO on neither the classifier nor the "
          "last residual block, whose output the classifier reads after the average pool. At 2-bit activations "
          "`scripts/oso_reset.py` on a kept brecq+ioso W2A2 calibration without the classifier's OSO (seed 0, "
          "82.37%) gives 84.72% with layer4.1's OSO reset to identity, no other block more than +1 pp: OSO there "
          "lowers the block's reconstruction loss 3.0x against brecq's (1,833 against 5,459) and costs top-1. "
          "Both columns leave the classifier without OSO. At 5,000/1,250 (docs/i5000/TOOLBOX.md), paired by "
          "seed: brecq+ioso +1.17 ± 1.19 pp (+2.44, +0.08, +0.99; 3 of 3 higher), which then leads brecq by "
          "+3.05 ± 2.56 (3 of 3); qdrop+ioso +0.15 ± 0.24 (+0.03, -0.01, +0.43). A cost with the BRECQ base only "
          "(docs/CALIBRATION.md); the default keeps OSO on every layer.",
          labels=("OSO on layer4.1", "not on layer4.1"), fixed=(("oso_logits", False),)),
    Study("rounding", "Stochastic rounding", ("weight_rounding",), WEIGHT_ROUNDINGS, ((2, 4), (4, 4)), ("rtn",),
          "`--weight-rounding stochastic`: each weight rounds up with probability equal to its fractional part "
          "(unbiased, seeded by --seed) instead of to nearest, where no rounding is learned (RTN). It exports "
          "like nearest rounding (integer top-1 in brackets)."),
)


def table(study: Study, records: list[dict]) -> str:
    """Rows (net, bits, method), a column per value: fake-quant top-1, and integer top-1 where run."""
    heads = ["net", "bits", "method", *study.columns]
    body = []
    for net in study.nets:
        for w, a in study.bits:
            for method in study.methods:
                row = [net, bits_label(w, a), method]
                for cell in study.groups(records, net, (w, a), method):
                    text = spread([r["fake_quant"] for r in cell])
                    integer = [r["integer"] for r in cell if r.get("integer") is not None]
                    row.append(text + (f" (integer {spread(integer)})" if integer else ""))
                body.append(row)
    return output.md_table(heads, body)


def panels(study: Study, records: list[dict]) -> list[tuple[str, list[str], dict[str, list[list[float]]]]]:
    """One panel per (net, bits) of a study: a group per value, a bar per method (top-1 per seed)."""
    found = []
    for net in study.nets:
        for w, a in study.bits:
            series = {m: [[r["fake_quant"] for r in group] for group in study.groups(records, net, (w, a), m)]
                      for m in study.methods}
            if any(group for groups in series.values() for group in groups):     # not a --bits left out
                found.append((f"{net} {bits_label(w, a)}", list(study.columns), series))
    return found


def plot_name(study: Study) -> str:
    return f"toolbox_{study.name}.png"


def on_one_checkpoint(study: Study, records: list[dict]) -> list[dict]:
    """A study's records, one per cell: where a cell ran on several checkpoints (retrainings on
    other CPU models), the one most of the study's cells ran on."""
    mine = [r for net in study.nets for bits in (*study.bits, *study.uniform) for r in study.records(records, net, bits)]
    usual = usual_checkpoint(mine)
    chosen = {}
    for r in mine:
        if r["key"] not in chosen or r["checkpoint"] == usual:
            chosen[r["key"]] = r
    return list(chosen.values())


def checkpoint_note(study: Study, chosen: list[dict], records: list[dict]) -> list[str]:
    """A line where a study's cells ran on another checkpoint of a network than most of the
    document's: they then compare with each other, not with the other studies."""
    notes = []
    for net in study.nets:
        usual = usual_checkpoint([r for r in records if r["net"] == net])
        moved = [r for r in chosen if r["net"] == net and r["checkpoint"] != usual]
        for checkpoint in dict.fromkeys(r["checkpoint"] for r in moved):
            cells = [r for r in moved if r["checkpoint"] == checkpoint]
            which = "This study's cells" if len(cells) == len([r for r in chosen if r["net"] == net]) else \
                ", ".join(f"{r['method']} {r['bits']} {study.label(r)}" for r in cells)
            notes.append(f"{which} ran on another {net} checkpoint (`{checkpoint[:8]}`, float top-1 "
                         f"{cells[0]['float']:.2f} %; most cells here: `{usual[:8]}`, "
                         f"{next(r['float'] for r in records if r['checkpoint'] == usual):.2f} %), a retraining on "
                         "another CPU model: compare them with each other, not with the other studies.")
    return notes


def report(records: list[dict], budget: Budget, docs: Path, command: str, planned: int) -> Path:
    docs.mkdir(parents=True, exist_ok=True)
    output.write_json(str(docs / RECORDS), records)
    sections = [
        "# The lecture's toolbox in the same pipeline",
        f"{NET} (and mobilenet_v2 for QAT) at {budget.size} px (pyioso train's Fashion-MNIST checkpoints), "
        f"{budget.images} calibration images "
        f"drawn by the seed, batch 32, {budget.iters} weight-stage / {budget.act_iters} activation-stage iterations "
        f"per block{' (the quick budget of RESULTS.md)' if budget.iters == Budget.iters else ''}, first and last "
        "layers 8-bit; fake-quant top-1 % on the 10,000 test images, mean ± std over the seeds.",
        f"Produced by `{command}` (bench/accuracy/toolbox.py); {len(records)} calibrations recorded for {planned} planned "
        "cells (a cell run on two checkpoints counts twice)."]
    for study in STUDIES:
        chosen = on_one_checkpoint(study, records)
        if all(study.value(r) == study.values[0] for r in chosen):
            continue            # only default cells (other studies share them): a study left out (--studies)
        plots.grouped_bars(panels(study, chosen), docs / plot_name(study))
        sections += [f"## {study.title}", study.about, *checkpoint_note(study, chosen, records), table(study, chosen),
                     f"![{study.name}]({plot_name(study)})"]
    path = docs / "TOOLBOX.md"
    output.atomic_write(str(path), lambda f: f.write(("\n\n".join(sections) + "\n").encode()))
    return path


def _restore(committed: list[dict], cells: list[Cell], budget: Budget, out: Path, checkpoint: str) -> None:
    """Cells a committed study holds under this budget, written where a run finds them (a cell
    recorded on several checkpoints: this machine's, else the last committed)."""
    mine = {}
    for r in committed:
        if Budget(**r["budget"]) == budget and (r["key"] not in mine or r["checkpoint"] == checkpoint):
            mine[r["key"]] = r
    for cell in cells:
        if cell.key in mine:
            place(cell, out, mine[cell.key], rewrite=mine[cell.key]["checkpoint"] == checkpoint)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.accuracy.toolbox", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", default=",".join(s.name for s in STUDIES),
                   help=f"comma-separated (default: {','.join(s.name for s in STUDIES)})")
    p.add_argument("--methods", help="only these of each study's methods (comma-separated; default: all)")
    p.add_argument("--nets", help="only these of each study's networks (comma-separated; default: all)")
    p.add_argument("--bits", help="only these of each study's bit settings (comma-separated, e.g. W2A4; default: all)")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds of each cell (default: 3)")
    p.add_argument("--iters", type=positive_int, default=Budget.iters,
                   help=f"weight-stage iterations per block (default: {Budget.iters})")
    p.add_argument("--act-iters", type=nonnegative_int, default=Budget.act_iters,
                   help=f"activation-stage iterations per block (default: {Budget.act_iters})")
    p.add_argument("--weights", default=train.TRAINED,
                   help=f"'{train.TRAINED}' (pyioso train's checkpoint), 'random' (smoke) or a state_dict file")
    p.add_argument("--size", type=positive_int, default=Budget.size, help="input pixels (default: 32)")
    add_eval_images(p)
    add_run_options(p, "TOOLBOX.md", jobs=1)
    args = p.parse_args(argv)
    try:
        names = args.studies.split(",")
        unknown = sorted(set(names) - {s.name for s in STUDIES})
        if unknown:
            raise PyiosoError(f"--studies {args.studies}: {', '.join(unknown)} unknown; use "
                              f"{', '.join(s.name for s in STUDIES)}")
        budget = Budget(args.iters, args.act_iters, eval_images=args.eval_images, size=args.size)
        methods = set(args.methods.split(",")) if args.methods else {m for s in STUDIES for m in s.methods}
        nets = set(args.nets.split(",")) if args.nets else {n for s in STUDIES for n in s.nets}
        bits = set(args.bits.split(",")) if args.bits else None
        cells = list(dict.fromkeys(c for seed in range(args.seeds) for s in STUDIES if s.name in names
                                   for c in s.cells(args.seeds)
                                   if c.seed == seed and c.method in methods and c.net in nets
                                   and (bits is None or c.bits in bits)))
        if bits and not cells:
            offered = sorted({bits_label(*b) for s in STUDIES if s.name in names for b in s.bits + s.uniform})
            raise PyiosoError(f"--bits {args.bits}: the chosen studies run none of these; use {', '.join(offered)}")
        out = Path(args.out) / budget.folder
        committed = committed_records(Path(args.docs) / RECORDS)
        nets = sorted({c.net for c in cells})
        recorded = {c.key for c in cells if c.record(out).is_file()} | {
            r["key"] for r in committed if Budget(**r["budget"]) == budget}
        to_run = set() if args.report_only else {c.net for c in cells if c.key not in recorded}
        weights = _weights(args.weights, nets, budget, not args.quiet, to_run)
        for net in nets:
            _restore([r for r in committed if r["net"] == net], cells, budget, out, checkpoint_of(weights[net]))
        records = run_grid(cells, budget, weights, out, args.jobs, not args.quiet, not args.report_only, args.ray)
        command = " ".join(["python -m bench.accuracy.toolbox", *(sys.argv[1:] if argv is None else argv)])
        path = report(merge_records(committed, records), budget, Path(args.docs),
                      command.replace(" --report-only", ""), len(cells))
    except PyiosoError as err:
        sys.exit(f"error: {err}")
    print(f"wrote {path} ({len(records)} calibrations)")


if __name__ == "__main__":
    main()
