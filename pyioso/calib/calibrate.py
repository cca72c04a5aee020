"""Post-training calibration: RTN, AdaRound, BRECQ, QDrop and IOSO (paper Algorithm 1).

All methods run one loop: the network is cut into segments (blocks or layers, pyioso.calib.blocks)
and each stage walks them in order. For a segment it caches, for the calibration images, the
float model's inputs and outputs and the quantized model's inputs (its predecessors already
calibrated), then minimizes the reconstruction loss of the segment's output, and moves the caches
one segment on. Only one segment's caches live at a time. After every segment the state is
checkpointed; a run resumed from a checkpoint recomputes its caches from the saved state and
continues with the same per-segment random streams, so it ends with the same result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from golden.errors import PyiosoError
from golden.spec import GRANULARITY, ISG_SHIFT, ISG_SHIFTS
from pyioso import output
from pyioso.calib import blocks, qnet, ties
from pyioso.calib.blocks import Segment
from pyioso.calib.isg import InputScale
from pyioso.calib.qnet import ActQuant, QConv, QNet
from pyioso.quant import lsq, rounding
from pyioso.quant.granularity import GRANULARITIES, INTEGER_GRANULARITIES
from pyioso.quant.levels import LEVELS, STORAGE_BITS
from pyioso.quant.observers import OBSERVERS
from pyioso.quant.rounding import AdaRound, BetaSchedule

METHODS = ("rtn", "adaround", "brecq", "qdrop", "ioso")
BASES = ("brecq", "qdrop")
INPUT_SCALES = ("grouped", "free", "none")
# Weight grids per output channel: symmetric (zero point 0: what the integer engine runs) or
# asymmetric (an integer zero point per channel: BRECQ's and QDrop's own grid, fake-quant only).
WEIGHT_GRIDS = ("symmetric", "asymmetric")
# Quantized tensors: every one the engine stores, or (an ablation, fake-quant only) only those the
# base method's own code quantizes (pyioso.calib.qnet.QUANT_POINTS).
ACT_POINTS = ("engine", "reference")
# Which network the activation codings are observed on before the activation stage learns them:
# "float", the float network's tensors at build (the default); "quantized", again on 64 images with
# the weights and every coding before it quantized, as BRECQ's own code does (main_imagenet.py)
ACT_INITS = ("float", "quantized")
ACT_INIT_IMAGES = 64
# How OSO's learning rate runs over a stage: "constant" at lr, as AdaRound's rounding variables
# it learns beside (the default), or "cosine" from lr to 0, as the activation steps, so that the
# continuous scales and offsets settle instead of following the last mini-batches' noise.
OSO_SCHEDULES = ("constant", "cosine")
# The rounding of weights whose rounding is not learned (rtn, and every layer before AdaRound).
WEIGHT_ROUNDINGS = ("nearest", "stochastic")
CHECKPOINT = "checkpoint.pt"
# An activation step is kept at or above this share of its value when its stage began: Adam's
# absolute steps (act_lr) could otherwise carry a small step across zero, a meaningless coding.
STEP_FLOOR = 0.01
CHECKPOINT_FORMAT = 2       # 2: AdaRound's V and floor stored as [C_out, K] matrices
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    """Calibration settings; the defaults are the references' (BRECQ, QDrop, IOSO paper)."""

    method: str = "ioso"
    base: str = "brecq"             # what ioso builds on
    w_bits: int = 4
    a_bits: int | None = 4          # None: weights only (activations stay float)
    iters: int = 20000              # per segment, weight (or QDrop's joint) stage
    act_iters: int = 5000           # per segment, BRECQ's activation stage
    batch: int = 32
    lr: float = 1e-3                # Adam on V, R and OSO
    act_lr: float = 4e-4            # Adam on activation steps (BRECQ; QDrop uses 4e-5)
    round_weight: float = 0.01      # lambda_r
    group_weight: float = 0.01      # lambda_g (= lambda_r, paper Sec. 4)
    beta: tuple[float, float] = (20.0, 2.0)
    warmup: float = 0.2
    act_p: float = 2.4              # L_p of the activation stage's loss (BRECQ)
    drop: float = 0.5               # QDrop's probability of keeping an activation float
    input_scale: str = "grouped"    # ISG: grouped (hardware), free (Table 4 ablation), none
    oso_scale: bool = True
    oso_offset: bool = True
    oso_logits: bool = True         # False: no OSO on the layer writing the logits (the classifier)
    oso_off: tuple[str, ...] = ()   # conv/FC layers (pyioso layers' names, or "a,b") that learn no OSO either
    granularity: int = GRANULARITY  # ISG group sizes: multiples of the array's rows (§4)
    isg_shift: int = ISG_SHIFT      # n of the ISG scales 1 + s 2^-n (§2)
    observer: str = "mse"           # activation clipping: a name of quant.observers.OBSERVERS
    weight_observer: str = "mse"    # weight clipping (per output channel), likewise
    weight_grid: str = "symmetric"  # a name of WEIGHT_GRIDS
    act_points: str = "engine"      # a name of ACT_POINTS
    act_init: str = "float"         # a name of ACT_INITS
    oso_schedule: str = "constant"  # a name of OSO_SCHEDULES
    weight_levels: str = "uniform"  # a name of pyioso.quant.levels.LEVELS (ternary, binary: w_bits 2)
    weight_granularity: str = "channel"     # a name of pyioso.quant.granularity.GRANULARITIES
    weight_rounding: str = "nearest"        # a name of WEIGHT_ROUNDINGS: where no rounding is learned
    mixed_budget: float | None = None       # mixed precision: average weight bits (pyioso.calib.mixed)
    layer_w_bits: tuple[tuple[str, int], ...] = ()  # per-layer weight bits (the allocation, or given)
    mixed_act_budget: float | None = None   # mixed precision: average activation bits per element
    layer_a_bits: tuple[tuple[str, int], ...] = ()  # per-tensor activation bits, by the op writing it
    legalize_at: float = 0.9        # fraction of the weight stage after which groups are fixed
    seed: int = 0

    def __post_init__(self):
        for name in ("layer_w_bits", "layer_a_bits"):
            object.__setattr__(self, name, tuple((str(n), int(b)) for n, b in getattr(self, name)))
        names = self.oso_off.split(",") if isinstance(self.oso_off, str) else self.oso_off     # "a,b" as the CLI
        object.__setattr__(self, "oso_off", tuple(str(n).strip() for n in names if str(n).strip()))
        checks = [(self.method in METHODS, f"method {self.method!r}: use one of {', '.join(METHODS)}"),
                  (self.base in BASES, f"base {self.base!r}: ioso builds on {' or '.join(BASES)}"),
                  (self.input_scale in INPUT_SCALES,
                   f"input_scale {self.input_scale!r}: use one of {', '.join(INPUT_SCALES)}"),
                  (self.iters >= 1 and self.act_iters >= 1, "iters and act_iters must be >= 1"),
                  (self.batch >= 1, "batch must be >= 1"),
                  (self.weight_grid in WEIGHT_GRIDS,
                   f"weight_grid {self.weight_grid!r}: use one of {', '.join(WEIGHT_GRIDS)}"),
                  (self.weight_levels in LEVELS,
                   f"weight_levels {self.weight_levels!r}: use one of {', '.join(LEVELS)}"),
                  (self.weight_levels in ("uniform", "kmeans")
                   or (self.w_bits == STORAGE_BITS and self.weight_grid == "symmetric"),
                   f"weight_levels {self.weight_levels} stores its codes in {STORAGE_BITS}-bit symmetric weights: "
                   f"use w_bits {STORAGE_BITS} and the symmetric grid"),
                  (self.weight_granularity in GRANULARITIES,
                   f"weight_granularity {self.weight_granularity!r}: use one of {', '.join(GRANULARITIES)}"),
                  (self.weight_granularity in INTEGER_GRANULARITIES
                   or (self.weight_levels == "uniform" and self.weight_grid == "symmetric"),
                   f"weight_granularity {self.weight_granularity} scales the uniform symmetric grid: use "
                   "weight_levels uniform and weight_grid symmetric"),
                  (self.weight_rounding in WEIGHT_ROUNDINGS,
                   f"weight_rounding {self.weight_rounding!r}: use one of {', '.join(WEIGHT_ROUNDINGS)}"),
                  (self.mixed_budget is None or (self.weight_levels == "uniform" and 2 <= self.mixed_budget <= 8),
                   f"mixed_budget {self.mixed_budget}: give average weight bits in 2..8, with uniform weight levels"),
                  (self.mixed_act_budget is None or (self.a_bits is not None and 2 <= self.mixed_act_budget <= 8),
                   f"mixed_act_budget {self.mixed_act_budget}: give average activation bits in 2..8, with "
                   "quantized activations"),
                  (self.act_points in ACT_POINTS,
                   f"act_points {self.act_points!r}: use one of {', '.join(ACT_POINTS)}"),
                  (self.act_init in ACT_INITS, f"act_init {self.act_init!r}: use one of {', '.join(ACT_INITS)}"),
                  (self.act_init != "quantized" or (self.a_bits is not None and self.method != "rtn"
                                                    and not self.uses_qdrop),
                   "act_init quantized observes the codings before an activation stage, which only adaround, "
                   "brecq and ioso on brecq have, with activation bits: leave it float"),
                  (self.oso_schedule in OSO_SCHEDULES,
                   f"oso_schedule {self.oso_schedule!r}: use one of {', '.join(OSO_SCHEDULES)}"),
                  (self.oso_logits or (self.method == "ioso" and (self.oso_scale or self.oso_offset)),
                   "oso_logits False leaves OSO off the classifier, which only ioso with its output scale or offset "
                   "learns: leave it on"),
                  (not self.oso_off or (self.method == "ioso" and (self.oso_scale or self.oso_offset)),
                   "oso_off leaves OSO off the layers it names, which only ioso with its output scale or offset "
                   "learns: leave it empty"),
                  (self.oso_schedule == "constant" or (self.method == "ioso" and (self.oso_scale or self.oso_offset)),
                   "oso_schedule cosine sets how OSO learns, which only ioso with its output scale or offset does: "
                   "leave it constant"),
                  (0 <= self.drop < 1, "drop must be in [0, 1)"),
                  (0 < self.legalize_at <= 1, "legalize_at must be in (0, 1]"),
                  (self.granularity >= 1, "granularity must be >= 1"),
                  (self.isg_shift in ISG_SHIFTS, f"isg_shift must be in {ISG_SHIFTS.start}.."
                                                 f"{ISG_SHIFTS.stop - 1}"),
                  *((getattr(self, name) in OBSERVERS, f"{name} {getattr(self, name)!r}: use one "
                     f"of {', '.join(OBSERVERS)}") for name in ("observer", "weight_observer"))]
        for ok, why in checks:
            if not ok:
                raise PyiosoError(f"invalid calibration setting: {why}")

    @classmethod
    def named(cls, name: str, base: str = "brecq", **settings) -> Config:
        """The config of a method as users write it: rtn, adaround, brecq, qdrop, ioso (on
        `base`), brecq+ioso, qdrop+ioso. An unset act_lr takes the base's reference value
        (QDrop 4e-5, BRECQ 4e-4)."""
        method, _, other = name.strip().lower().partition("+")
        if other and method != "ioso":
            method, other = other, method        # "brecq+ioso" reads as ioso on brecq
        base = other or base
        if settings.get("act_lr") is None:
            qdrop = method == "qdrop" or (method == "ioso" and base == "qdrop")
            settings["act_lr"] = 4e-5 if qdrop else 4e-4
        return cls(method=method, base=base, **settings)

    @property
    def ioso(self) -> bool:
        return self.method == "ioso"

    @property
    def uses_qdrop(self) -> bool:
        return self.method == "qdrop" or (self.ioso and self.base == "qdrop")

    @property
    def quant_points(self) -> str:
        """The network's quantization points, a name of pyioso.calib.qnet.QUANT_POINTS."""
        return "engine" if self.act_points == "engine" else self.method if self.method in BASES else self.base

    @property
    def reconstruction_unit(self) -> str:
        return "layer" if self.method == "adaround" else "block"

    def stages(self) -> list[Stage]:
        if self.method == "rtn":
            return []
        isg = self.ioso and self.input_scale != "none"
        oso = self.ioso and (self.oso_scale or self.oso_offset)
        acts = self.a_bits is not None
        if self.uses_qdrop:
            return [Stage("joint", self.iters, rounding=True, groups=isg, oso=oso, acts=acts,
                          drop=self.drop if acts else 0.0, p=2.0)]
        stages = [Stage("weights", self.iters, rounding=True, groups=isg, oso=oso, acts=False, p=2.0)]
        if acts:
            stages.append(Stage("activations", self.act_iters, rounding=False, groups=False,
                                oso=oso, acts=True, p=self.act_p))
        return stages

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Stage:
    """What one pass over the segments learns (Algorithm 1: weights, then activations)."""

    name: str
    iters: int
    rounding: bool      # learn AdaRound's V (then harden it)
    groups: bool        # learn ISG logits R (then legalize)
    oso: bool           # learn gamma^z, phi^z
    acts: bool          # activations quantized, their steps learned (LSQ)
    drop: float = 0.0
    p: float = 2.0


@dataclass
class History:
    """What the run measured, per stage and segment: JSON-ready, saved with every checkpoint."""

    segments: list[dict] = field(default_factory=list)
    tie_nudges: dict[str, float] = field(default_factory=dict)     # pyioso.calib.ties, at the end

    def add(self, entry: dict) -> None:
        self.segments.append(entry)


def lp_loss(pred: torch.Tensor, target: torch.Tensor, p: float) -> torch.Tensor:
    """BRECQ's reconstruction loss: |error|^p summed over channels, averaged over the rest."""
    return (pred - target).abs().pow(p).sum(1).mean()


def weight_layers(model: torch.nn.Module) -> list[str]:
    """The float model's conv and FC layer names: what oso_off may name, before the QNet exists."""
    return [name for name, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def check_oso_off(config: Config, layers: list[str]) -> None:
    """Refuse an oso_off name that is none of the network's conv/FC `layers`."""
    unknown = [name for name in config.oso_off if name not in layers]
    if unknown:
        raise PyiosoError(f"oso_off (--no-oso-on) names {', '.join(unknown)}, not a conv or FC layer of this "
                          f"network: give some of {', '.join(layers)} (`pyioso layers --net NET` lists them)")


def prepare(net: QNet, config: Config) -> None:
    """Weight quantizers of the method before any reconstruction (AdaRound where learned)."""
    device = net.input_quant.scale.device.type
    if config.a_bits is not None:
        lsq.build_kernels(device)       # before any timed loop; weights only: no activation quantizer learns
    for stage in config.stages():
        if stage.rounding:
            rounding.build_kernels(device)
            for module in net.ops.values():
                if isinstance(module, QConv) and module.learns_rounding and not isinstance(module.rounding, AdaRound):
                    module.use_adaround()


def finish(net: QNet, config: Config) -> None:
    """The calibrated model: hard rounding, everything quantized as the integer network runs."""
    for module in net.ops.values():
        if isinstance(module, QConv) and isinstance(module.rounding, AdaRound):
            module.rounding.soft = False
    net.set_quant(True, config.a_bits is not None)
    net.eval()


class Calibrator:
    """Runs the stages over the segments, with checkpoints in `out` (if given)."""

    def __init__(self, net: QNet, images: torch.Tensor, config: Config, out: Path | None = None,
                 fingerprint: str = "", progress: bool = True, only: set[str] | None = None,
                 loss_images: int | None = 256):
        self.net, self.images, self.config, self.out = net, images, config, out
        self.loss_images = loss_images      # images the reported losses average over (None: all)
        self.only = only        # reconstruct just these segments (benchmarks); the rest stay RTN
        self.segments = blocks.segments(net, config.reconstruction_unit)
        check_oso_off(config, [n.name for n in net.nodes if n.kind in ("conv", "fc")])
        self.history = History()
        self.fingerprint = fingerprint
        self.progress = progress
        self.device = images.device
        self.complete = False
        self.resumed_seconds = 0.0     # what the processes before this one spent, as their last checkpoint saved it
        self._began = time.perf_counter()

    # -- caches -------------------------------------------------------------------------------

    def _advance(self, seg: Segment, values: dict, chunk: int = 128) -> dict:
        """Run `seg` over all images in fixed chunks (so resumed runs compute the same floats)."""
        n = self.images.shape[0]
        outs: dict[str, list] = {}
        with torch.no_grad():
            for start in range(0, n, chunk):
                part = {t: values[t][start:start + chunk] for t in seg.inputs}
                result = self.net.run(part, seg.nodes)
                for t in seg.outputs:
                    outs.setdefault(t, []).append(result[t])
        return {t: torch.cat(v) for t, v in outs.items()}

    def _move(self, index: int, values: dict, new: dict) -> dict:
        live = blocks.live_after(self.segments, index, self.net)
        merged = {**values, **new}
        return {t: v for t, v in merged.items() if t in live}

    def _start(self, stage: Stage) -> tuple[dict, dict]:
        """A stage's first inputs: the images, float and as the stage's network reads them (the
        input coding set for this stage before it quantizes them, not left as the last stage set it)."""
        x = self.images
        self.net.input_quant.enabled = stage.acts
        with torch.no_grad():
            q = self.net.quantize_input(x)
        return {self.net.input_name: x}, {self.net.input_name: q}

    # -- run ----------------------------------------------------------------------------------

    def run(self, stop_after: int | None = None) -> History:
        """Calibrate; `stop_after` (segments done in this call) simulates an interruption."""
        config = self.config
        self._began = time.perf_counter()
        prepare(self.net, config)
        done = self._resume()
        stages = config.stages()
        steps = 0
        for si, stage in enumerate(stages):
            if si < done[0]:
                continue
            if si > done[0] and stage.acts and not stage.rounding and config.act_init == "quantized":
                qnet.observe_quantized(self.net, self.images[:ACT_INIT_IMAGES], config.observer)
            fp, q = self._start(stage)
            for i, seg in enumerate(self.segments):
                self._set_stage(stage, seg)
                if (si, i) <= done:
                    fp, q = self._pass(i, seg, fp, q)
                    continue
                if stop_after is not None and steps == stop_after:
                    return self.history
                fp_out = self._float_outputs(seg, fp)
                if seg.trainable and (self.only is None or seg.name in self.only):
                    self._reconstruct(si, stage, i, seg, fp, q, fp_out)
                elif self.only is not None:
                    self._harden(seg)
                fp, q = self._pass(i, seg, fp, q, fp_out)
                self._checkpoint(si, i)
                steps += 1
        finish(self.net, config)
        if config.a_bits is not None and self.only is None:
            self.history.tie_nudges = ties.settle_ties(self.net, self.images[:ties.IMAGES])
            for name, nudge in self.history.tie_nudges.items():
                log.info("%s: activation step moved off a rounding tie by %+.4f%%", name, 100 * nudge)
        self.complete = True
        return self.history

    def _harden(self, seg: Segment) -> None:
        """A segment left out of the reconstruction keeps nearest rounding."""
        for n in seg.nodes:
            m = self.net.op(n)
            if isinstance(m, QConv) and isinstance(m.rounding, AdaRound):
                m.rounding = m._nearest()

    def _pass(self, i: int, seg: Segment, fp: dict, q: dict, fp_out: dict | None = None):
        fp_out = fp_out if fp_out is not None else self._float_outputs(seg, fp)
        self.net.eval()
        q_out = self._advance(seg, q)
        return self._move(i, fp, fp_out), self._move(i, q, q_out)

    def _float_outputs(self, seg: Segment, fp: dict) -> dict:
        states = self._quant_states(seg)
        self.net.set_quant(False, False, seg.nodes)
        self.net.eval()
        out = self._advance(seg, fp)
        self._restore(seg, states)
        return out

    def _quant_states(self, seg: Segment):
        return [(m.quant_weights if isinstance(m, QConv) else None,
                 m.act.enabled if hasattr(m, "act") else None)
                for m in (self.net.op(n) for n in seg.nodes)]

    def _restore(self, seg: Segment, states) -> None:
        for node, (w, a) in zip(seg.nodes, states):
            m = self.net.op(node)
            if w is not None:
                m.quant_weights = w
            if a is not None:
                m.act.enabled = a

    def _set_stage(self, stage: Stage, seg: Segment) -> None:
        self.net.set_quant(True, stage.acts, seg.nodes)
        self.net.input_quant.enabled = stage.acts

    # -- one segment ---------------------------------------------------------------------------

    def _learned(self, stage: Stage, seg: Segment):
        """(AdaRound modules, InputScales that start learning here, OSO params, act steps)."""
        layers = [n for n in seg.nodes if n.kind in ("conv", "fc")]
        convs = [self.net.op(n) for n in layers]
        rounding = [c for c in convs if stage.rounding and isinstance(c.rounding, AdaRound)]
        scales: list[InputScale] = []
        if stage.groups:
            for n in seg.nodes:
                s = self.net.input_scale(n)
                if s is not None and s.mode == "none" and s not in scales:
                    scales.append(s)
        oso = []
        if stage.oso:
            for c in (self.net.op(n) for n in layers if self._learns_oso(n)):
                c.oso = True
                oso += [p for p, on in ((c.oso_scale, self.config.oso_scale),
                                        (c.oso_offset, self.config.oso_offset)) if on]
        steps = [self.net.op(n).act.scale for n in seg.nodes
                 if stage.acts and hasattr(self.net.op(n), "act") and not self.net.op(n).act.kept_float]
        return rounding, scales, oso, steps

    def _learns_oso(self, node) -> bool:
        """Whether an IOSO stage gives this conv/FC layer OSO (the settings may leave it off)."""
        classifier = node.output == self.net.output_name
        return node.name not in self.config.oso_off and (self.config.oso_logits or not classifier)

    def _reconstruct(self, si: int, stage: Stage, i: int, seg: Segment, fp: dict, q: dict,
                     fp_out: dict) -> None:
        config = self.config
        rounding, scales, oso, steps = self._learned(stage, seg)
        mode = "free" if config.input_scale == "free" else "soft"
        for s in scales:
            s.learn(mode)
        for c in rounding:
            c.rounding.soft = True
        beta = BetaSchedule(stage.iters, config.warmup, *config.beta)
        gen = torch.Generator(device=self.device).manual_seed(_stream_seed(config.seed, si, i))
        for n in seg.nodes:
            act = getattr(self.net.op(n), "act", None)
            if act is not None:
                act.drop, act.generator = stage.drop, gen
        nodes, q, fp = self._prefix(seg, stage, q, fp)
        fp_out = {k: _fast_layout(v) for k, v in fp_out.items()}
        targets = list(seg.outputs)
        loss = lambda: self.segment_loss(nodes, targets, q, fp_out, stage.p, self.loss_images)  # noqa: E731
        n_images = self.images.shape[0]
        legalize_at = int(config.legalize_at * stage.iters) if scales and mode == "soft" else None
        entry = {"stage": stage.name, "segment": seg.name, "iters": 0, "curve": [],
                 "loss_before": loss()}       # which also shows each conv the kernel taps its input reaches
        weights = [c.rounding.focus(c.taps) for c in rounding] + [p for s in scales for p in (s.logits, s.log_scale)
                                                                 if p.requires_grad]
        constant, cosine = (lambda t: 1.0), (lambda t: 0.5 * (1 + math.cos(math.pi * t / stage.iters)))
        if config.oso_schedule == "constant":
            weights, oso = weights + oso, []
        groups = [(g, lr, schedule) for g, lr, schedule in ((weights, config.lr, constant), (oso, config.lr, cosine),
                                                           (steps, config.act_lr, cosine)) if g]
        for g, _, _ in groups:
            for p in g:
                p.requires_grad_(True)
        floors = [s.detach() * STEP_FLOOR for s in steps]
        # nothing to learn (a logits layer kept float in the activation stage): measured, not trained
        entry["iters"] = iters = stage.iters if groups else 0
        optimizer = torch.optim.Adam([{"params": g, "lr": lr} for g, lr, _ in groups], fused=True) if iters else None
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [s for _, _, s in groups]) if iters else None
        self.net.train()
        bar = tqdm(range(iters), desc=f"{stage.name} {i + 1}/{len(self.segments)} {seg.name}",
                   leave=False, disable=not self.progress, unit="it", mininterval=1.0)
        start = time.perf_counter()
        for t in bar:
            if t == legalize_at:
                entry.update(self._legalize(seg, scales, loss))
                self.net.train()
            idx = torch.randperm(n_images, generator=gen, device=self.device)[:config.batch]
            inputs = {k: v[idx] for k, v in q.items()}
            if stage.drop:
                inputs = {k: lsq.mix(v, fp[k][idx], stage.drop, gen) for k, v in inputs.items()}
            b = beta(t)
            for c in rounding:
                c.beta = b
            result = self.net.run(inputs, nodes)
            rec = sum(lp_loss(result[k], fp_out[k][idx], stage.p) for k in targets)
            reg = config.round_weight * sum(c.penalty for c in rounding) if b else 0.0
            if b and mode == "soft":
                reg = reg + sum(config.group_weight * s.regularizer(b) for s in scales if s.mode == "soft")
            optimizer.zero_grad(set_to_none=True)
            (rec + reg).backward()
            optimizer.step()
            for s, floor in zip(steps, floors):        # LSQ's step stays positive (projection)
                s.data.clamp_(min=floor)
            if scheduler:
                scheduler.step()
            for s in scales:
                if s.mode == "soft":
                    s.record_fixed(t)
            if t % 50 == 0 or t == stage.iters - 1:
                entry["curve"].append((t, float(rec.detach())))
                bar.set_postfix(rec=f"{entry['curve'][-1][1]:.4g}")
        entry["seconds"] = time.perf_counter() - start
        for s in scales:
            if s.mode == "soft":        # legalize_at == iters: fix the groups at the end
                entry.update(self._legalize(seg, scales, loss))
        for c in rounding:
            c.rounding.soft = False
        for p in weights + oso + steps:
            p.requires_grad_(False)
        for c in rounding:
            c.rounding.unfocus()
        for n in seg.nodes:
            act = getattr(self.net.op(n), "act", None)
            if act is not None:
                act.drop, act.generator = 0.0, None
        self.net.eval()
        entry["loss_after"] = loss()
        self.history.add(entry)
        log.info("%s %s: loss %.5g -> %.5g", stage.name, seg.name, entry["loss_before"], entry["loss_after"])

    def _prefix(self, seg: Segment, stage: Stage, q: dict, fp: dict):
        """Leading nodes with nothing to learn in this stage (a max pool before a block) run
        once over the caches instead of every iteration; the caches move to channels-last,
        the layout the CPU conv kernels run fastest on."""
        nodes = list(seg.nodes)
        prefix = []
        while nodes and nodes[0].kind == "max_pool" or (
                nodes and not stage.acts and nodes[0].kind in ("add", "avg_pool")):
            prefix.append(nodes.pop(0))
        q, fp = ({**v, **self._run_all(prefix, v)} if prefix else v for v in (q, fp))
        made = {n.output for n in nodes}
        needed = {t for n in nodes for t in n.inputs if t not in made}
        return nodes, {k: _fast_layout(q[k]) for k in needed}, \
            {k: _fast_layout(fp[k]) for k in needed}

    def _run_all(self, nodes, values: dict, chunk: int = 128) -> dict:
        with torch.no_grad():
            parts = [self.net.run({k: v[i:i + chunk] for k, v in values.items()}, nodes)
                     for i in range(0, self.images.shape[0], chunk)]
        return {n.output: torch.cat([p[n.output] for p in parts]) for n in nodes}

    def _legalize(self, seg: Segment, scales: list[InputScale], loss) -> dict:
        before = loss()
        record = []
        for s in scales:
            soft = s().detach().clone()
            cid = next(c for c, m in self.net.input_scales.items() if m is s)
            s.legalize(self.config.granularity, int(cid) in self.net.permutable)
            record.append({"class": int(cid), "soft_scales": soft.tolist(),
                           "codes": s.codes.tolist(), "fixed_at": s.fixed_at.tolist()})
        after = loss()
        log.info("legalized %s: loss %.5g -> %.5g", seg.name, before, after)
        return {"legalize": {"loss_before": before, "loss_after": after, "classes": record}}

    def segment_loss(self, nodes, outputs, q: dict, fp_out: dict, p: float,
                     limit: int | None = 256) -> float:
        """Reconstruction loss of the hardware model (hard rounding) over the first `limit`
        calibration images."""
        was_training = self.net.training
        soft = [m.rounding for m in (self.net.op(n) for n in nodes)
                if isinstance(m, QConv) and isinstance(m.rounding, AdaRound) and m.rounding.soft]
        for r in soft:
            r.soft = False
        self.net.eval()
        with torch.no_grad():
            result = self.net.run({k: v[:limit] for k, v in q.items()}, nodes)
            loss = sum(float(lp_loss(result[k], fp_out[k][:limit], p)) for k in outputs)
        for r in soft:
            r.soft = True
        self.net.train(was_training)
        return loss

    def final_losses(self) -> dict[str, float]:
        """Each learned segment's reconstruction loss of the finished network on all of this
        calibrator's images, with inputs as its last stage saw them: run on images the
        calibration never saw, it says whether the loss it lowered generalizes. (A method that
        learns nothing, RTN, is measured as the finished network runs, with the L_2 loss.)"""
        config = self.config
        stage = (config.stages() or [Stage("final", 0, False, False, False, acts=config.a_bits is not None)])[-1]
        fp, q = self._start(stage)
        losses = {}
        for i, seg in enumerate(self.segments):
            self._set_stage(stage, seg)
            fp_out = self._float_outputs(seg, fp)
            if seg.trainable:
                nodes, q_in, _ = self._prefix(seg, stage, q, fp)
                losses[seg.name] = self.segment_loss(nodes, list(seg.outputs), q_in, fp_out, stage.p, None)
            fp, q = self._pass(i, seg, fp, q, fp_out)
        finish(self.net, config)
        return losses

    # -- checkpoints ---------------------------------------------------------------------------

    def _checkpoint(self, si: int, i: int) -> None:
        if self.out is None:
            return
        state = {"format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint,
                 "config": self.config.to_json(), "done": (si, i),
                 "structure": structure(self.net), "state": self.net.state_dict(),
                 "history": self.history.segments,
                 "seconds": self.resumed_seconds + time.perf_counter() - self._began}
        output.atomic_write(str(self.out / CHECKPOINT), lambda f: torch.save(state, f))

    def _resume(self) -> tuple[int, int]:
        """(stage, segment) last done by a saved run with the same settings, or (-1, -1)."""
        path = None if self.out is None else self.out / CHECKPOINT
        if path is None or not path.is_file():
            return (-1, -1)
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
            raise PyiosoError(f"{path} is not a readable checkpoint ({err}): delete it to start over") from err
        if state.get("format") != CHECKPOINT_FORMAT:
            raise PyiosoError(f"{path} was written by an older pyioso (checkpoint format "
                              f"{state.get('format', 1)}, this one reads {CHECKPOINT_FORMAT}): "
                              "delete it to start over")
        if state.get("fingerprint") != self.fingerprint or full_settings(state.get("config")) != self.config.to_json():
            raise PyiosoError(f"{path} belongs to a calibration with other settings, model or data: "
                              "use another --out directory or delete the checkpoint to start over")
        restore(self.net, state)
        self.history.segments = list(state["history"])
        # a checkpoint from before "seconds" was saved: its stages' loop seconds, most of it
        self.resumed_seconds = state.get("seconds", sum(entry["seconds"] for entry in state["history"]))
        log.info("resuming after stage %d segment %d", *state["done"])
        return tuple(state["done"])


def full_settings(settings: dict | None) -> dict | None:
    """A saved Config.to_json() with the settings added since it was saved at their defaults, so
    that older runs and checkpoints resume (None: not a config's settings)."""
    defaults = Config().to_json()
    return {**defaults, **settings} if isinstance(settings, dict) and settings.keys() <= defaults.keys() else None


def structure(net: QNet) -> dict:
    """The module choices a state_dict needs to load (AdaRound or nearest, OSO, ISG modes), and the
    activation zero points (not parameters; --act-init quantized observes them again)."""
    return {"adaround": [k for k, m in net.ops.items()
                         if isinstance(m, QConv) and isinstance(m.rounding, AdaRound)],
            "soft": [k for k, m in net.ops.items()
                     if isinstance(m, QConv) and isinstance(m.rounding, AdaRound) and m.rounding.soft],
            "oso": [k for k, m in net.ops.items() if isinstance(m, QConv) and m.oso],
            "input_scales": {k: s.mode for k, s in net.input_scales.items()},
            "zero_points": {k: m.zero_point for k, m in net.named_modules() if isinstance(m, ActQuant)}}


def restore(net: QNet, state: dict) -> None:
    s = state["structure"]
    for k in s["adaround"]:
        net.ops[k].use_adaround().soft = k in s["soft"]
    for k in s["oso"]:
        net.ops[k].oso = True
    for k, mode in s["input_scales"].items():
        net.input_scales[k].mode = mode
    modules = dict(net.named_modules())
    for k, zero_point in s.get("zero_points", {}).items():     # saved before: the build's, unchanged
        modules[k].zero_point = zero_point
    net.load_state_dict(state["state"])


def _fast_layout(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


def _stream_seed(seed: int, stage: int, segment: int) -> int:
    digest = hashlib.sha256(f"{seed}/{stage}/{segment}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def fingerprint(*parts) -> str:
    """A short hash of what a checkpoint must match (model weights, images, settings)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            h.update(part.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(part, dict) and all(isinstance(v, torch.Tensor) for v in part.values()):
            for k in sorted(part):
                h.update(k.encode())
                h.update(part[k].detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True).encode())
    return h.hexdigest()[:16]

