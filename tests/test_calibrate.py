"""Calibrator on a tiny ResNet: method ranking, export equality, resume, bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch
from torch import nn

from golden.errors import PyiosoError
from pyioso.calib import calibrate, export, qnet, workflow
from pyioso.cli import main as cli
from pyioso.data.datasets import calibration_images
from pyioso.integer import artifact
from pyioso.models.tv import torchvision
from pyioso.quant.observers import OBSERVERS

SIZE, IMAGES, ITERS = 16, 128, 80


class TinyResNet(nn.Module):
    """Stem, two torchvision BasicBlocks (one with a downsample), pool and classifier."""

    def __init__(self):
        super().__init__()
        resnet = torchvision().models.resnet
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU(inplace=True))
        down = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32))
        self.blocks = nn.Sequential(resnet.BasicBlock(16, 16), resnet.BasicBlock(16, 32, 2, down))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = TinyResNet()
    for m in model.modules():           # non-trivial BN statistics, as in a trained network
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return calibration_images(IMAGES, SIZE, 0)


def _calibrate(images, out=None, stop_after=None, **kw) -> tuple[qnet.QNet, calibrate.Calibrator]:
    config = calibrate.Config(w_bits=2, a_bits=4, iters=ITERS, act_iters=20, batch=16, **kw)
    net = qnet.build(_model(), images[:32], config.w_bits, config.a_bits)
    cal = calibrate.Calibrator(net, images, config, out, fingerprint="tiny", progress=False)
    cal.run(stop_after)
    return net, cal


def _final_loss(cal: calibrate.Calibrator) -> float:
    """Sum over segments of the weight stage's final reconstruction loss."""
    return sum(e["loss_after"] for e in cal.history.segments if e["stage"] in ("weights", "joint"))


def _logit_codes(net: qnet.QNet, integer, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logit codes of the integer network and of the fake-quant one on the same images."""
    codes = integer.forward(integer.quantize_input(images))[0]
    with torch.no_grad():
        fake = net(images)
    c = net.coding(net.output_name)
    return codes, torch.round(fake / c.scale).to(torch.int64) + c.zero_point


@pytest.fixture(scope="module")
def runs(images):
    return {m: _calibrate(images, method=m) for m in ("brecq", "ioso")}


def test_ioso_beats_rtn_and_matches_brecq(runs):
    _, brecq = runs["brecq"]
    _, ioso = runs["ioso"]
    rtn = sum(e["loss_before"] for e in brecq.history.segments if e["stage"] == "weights")
    print(f"weight-stage loss: rtn {rtn:.4f}, brecq {_final_loss(brecq):.4f}, ioso {_final_loss(ioso):.4f}")
    assert _final_loss(ioso) < rtn
    assert _final_loss(ioso) <= _final_loss(brecq) * 1.02


@pytest.mark.parametrize("size, stride, taps", [(1, 1, ((1, 2), (1, 2))), (2, 2, ((1, 3), (1, 3))),
                                                 (3, 1, ((0, 3), (0, 3))), (4, 4, ((1, 3), (1, 3)))])
def test_tap_crop_keeps_the_taps_the_input_reaches(size, stride, taps):
    geometry = dict(stride=(stride, stride), padding=(1, 1), dilation=(1, 1), groups=1)
    crop, cropped = qnet.tap_crop((3, 3), (size, size), geometry)
    assert crop == tuple(slice(*t) for t in taps)
    x = torch.randn(2, 4, size, size, generator=torch.Generator().manual_seed(size))
    w = torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(stride))
    assert torch.allclose(torch.nn.functional.conv2d(x, w[:, :, crop[0], crop[1]], **cropped),
                          torch.nn.functional.conv2d(x, w, **geometry), atol=1e-6)


@pytest.mark.parametrize("method", ["brecq", "qdrop"])
def test_learning_only_the_reached_taps_gives_the_same_calibration(monkeypatch, method):
    """At 2 px the second block's convs see 2x2 and 1x1 maps: AdaRound learns only the taps their
    inputs reach (AdaRound.focus), and every code and loss comes out as when it learns the whole
    kernel."""
    images = calibration_images(64, 2, 0)
    focused, cal = _calibrate(images, method=method)
    monkeypatch.setattr(qnet.AdaRound, "focus", lambda self, taps: self.v)
    whole, whole_cal = _calibrate(images, method=method)
    assert any(m.taps != (slice(0, 3), slice(0, 3)) for m in focused.ops.values()
               if isinstance(m, qnet.QConv) and m.weight.shape[-1] == 3)
    for name, op in focused.ops.items():
        if isinstance(op, qnet.QConv):
            assert torch.equal(op.weight_codes(), whole.ops[name].weight_codes()), name
    assert [e["loss_after"] for e in cal.history.segments] == [e["loss_after"] for e in whole_cal.history.segments]


def test_groups_are_legal_and_tied(runs):
    net, cal = runs["ioso"]
    legal = [c for e in cal.history.segments for c in e.get("legalize", {}).get("classes", [])]
    assert legal, "ioso fixed no ISG groups"
    for scale in net.input_scales.values():
        assert scale.mode in ("hard", "none")
    # the stream between the blocks feeds block 2's conv1 and its downsample: one grouping
    block2 = [n for n in net.nodes if n.name in ("blocks.1.conv1", "blocks.1.downsample.0")]
    assert net.input_scale(block2[0]) is net.input_scale(block2[1])


def test_integer_network_equals_fake_quant(runs, tmp_path):
    net, _ = runs["ioso"]
    test = calibration_images(256, SIZE, 7)
    integer, perms = export.integer_network(net)
    assert perms, "no permutation was folded"
    codes, fake_codes = _logit_codes(net, integer, test)
    agree = (codes.argmax(1) == fake_codes.argmax(1)).double().mean().item()
    print(f"agreement {agree:.4f}, max logit code diff {(codes - fake_codes).abs().max().item()}")
    assert agree >= 0.99
    path = artifact.save(tmp_path / "a", integer, perms, {"network": {"name": "tiny"}})
    loaded, doc = artifact.load(path)
    assert torch.equal(loaded.forward(loaded.quantize_input(test))[0], codes)
    again = artifact.save(tmp_path / "b", loaded, perms, {"network": {"name": "tiny"}})
    for name in (artifact.MANIFEST, artifact.ARRAYS):
        assert (path / name).read_bytes() == (again / name).read_bytes()


def test_resume_gives_the_same_result(images, runs, tmp_path):
    whole, _ = runs["ioso"]
    _calibrate(images, out=tmp_path, stop_after=2, method="ioso")
    resumed, cal = _calibrate(images, out=tmp_path, method="ioso")
    assert cal.complete
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_activation_steps_observed_on_the_quantized_network_as_brecqs_code_does(images, tmp_path):
    """--act-init quantized: before the activation stage every coding is observed again through the
    weight-quantized network, each after the codings before it; the stage starts from those, and a
    run resumed inside the activation stage keeps what its checkpoint holds."""
    seen = {}
    observe = qnet.observe_quantized

    def spy(net, imgs, observer):
        before = {n: a.coding() for n, a in net.named_modules() if isinstance(a, qnet.ActQuant)}
        observe(net, imgs, observer)
        seen.update(before=before, after={n: a.coding() for n, a in net.named_modules()
                                          if isinstance(a, qnet.ActQuant)}, images=len(imgs))
        assert not any(a.enabled for a in net.modules() if isinstance(a, qnet.ActQuant))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(qnet, "observe_quantized", spy)
        _, cal = _calibrate(images, out=tmp_path / "whole", method="brecq", act_init="quantized")
        assert seen["images"] == calibrate.ACT_INIT_IMAGES
        changed = [n for n in seen["after"] if seen["after"][n] != seen["before"][n]]
        assert len(changed) >= len(seen["after"]) // 2
        seen.clear()
        segments = len(cal.segments)
        _calibrate(images, out=tmp_path / "cut", method="brecq", act_init="quantized", stop_after=segments + 1)
        seen.clear()
        resumed, cal = _calibrate(images, out=tmp_path / "cut", method="brecq", act_init="quantized")
        assert cal.complete and not seen      # resumed inside the activation stage: not observed again
    whole, _ = _calibrate(images, method="brecq", act_init="quantized")
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_the_reported_final_loss_is_the_finished_networks(images, runs):
    """Each segment's last "loss after" is the loss of the network calibration hands over,
    remeasured from scratch: every stage reads the images through the input coding as the
    integer network does (the activation stage once read them float, left so by the weight stage)."""
    for method, (net, cal) in runs.items():
        last = {e["segment"]: e["loss_after"] for e in cal.history.segments}
        again = calibrate.Calibrator(net, images[:cal.loss_images], cal.config, progress=False).final_losses()
        assert again == pytest.approx(last, rel=1e-5), method


def test_activation_steps_stay_positive(images):
    """An absurd activation learning rate cannot carry an LSQ step across zero (a meaningless
    clamp); the steps stop at their floor."""
    config = calibrate.Config(w_bits=2, a_bits=4, iters=4, act_iters=10, batch=16, method="brecq", act_lr=10.0)
    net = qnet.build(_model(), images[:32], config.w_bits, config.a_bits)
    acts = [m for m in net.modules() if isinstance(m, qnet.ActQuant)]
    before = [float(a.scale) for a in acts]
    calibrate.Calibrator(net, images, config, None, fingerprint="tiny", progress=False).run()
    after = [float(a.scale) for a in acts]
    assert all(a >= calibrate.STEP_FLOOR * b * (1 - 1e-6) for a, b in zip(after, before))
    assert any(a < b for a, b in zip(after, before))        # the learning rate did push them down
    assert all(0 <= a.bounds()[0] <= a.bounds()[1] <= 2 ** a.bits - 1 for a in acts)


def test_checkpoint_of_an_older_format_is_refused(images, tmp_path):
    _calibrate(images, out=tmp_path, stop_after=1, method="brecq")
    state = torch.load(tmp_path / calibrate.CHECKPOINT, weights_only=False)
    del state["format"]                                 # as written before formats were numbered
    torch.save(state, tmp_path / calibrate.CHECKPOINT)
    with pytest.raises(PyiosoError, match="older pyioso .*delete it"):
        _calibrate(images, out=tmp_path, method="brecq")


def test_corrupt_and_old_artifacts_are_refused(runs, tmp_path):
    integer, perms = export.integer_network(runs["ioso"][0])
    path = artifact.save(tmp_path / "a", integer, perms, {})
    blob = bytearray((path / artifact.ARRAYS).read_bytes())
    blob[-1] ^= 1
    (path / artifact.ARRAYS).write_bytes(bytes(blob))
    with pytest.raises(PyiosoError, match="does not match the hash"):
        artifact.load(path)
    path = artifact.save(tmp_path / "a", integer, perms, {})
    doc = json.loads((path / artifact.MANIFEST).read_text())
    (path / artifact.MANIFEST).write_text(json.dumps({**doc, "version": 0}))
    with pytest.raises(PyiosoError, match="version 0"):
        artifact.load(path)
    with pytest.raises(PyiosoError, match="missing"):
        artifact.load(tmp_path / "nowhere")


def _tamper(path, edit, reseal: bool) -> None:
    """Apply `edit(doc, arrays)` to an artifact on disk; the arrays' hash is always updated (a
    careful editor), the manifest's digest only with `reseal` (a tool re-signing the edit)."""
    doc = json.loads((path / artifact.MANIFEST).read_text())
    arrays = artifact._read_safetensors((path / artifact.ARRAYS).read_bytes())
    edit(doc, arrays)
    blob = artifact._safetensors(arrays)
    (path / artifact.ARRAYS).write_bytes(blob)
    doc["arrays_sha256"] = hashlib.sha256(blob).hexdigest()
    if reseal:
        doc["digest"] = artifact._digest(doc)
    (path / artifact.MANIFEST).write_text(json.dumps(doc))


def _step(doc, kind):
    return next(s for s in doc["steps"] if s["op"]["type"] == kind)


def _set_array(key_of, value):
    def edit(doc, arrays):
        key = key_of(doc)
        arrays[key] = torch.full_like(arrays[key], value) if value is not None else arrays[key] * 0
    return edit


def _four_bit(doc):
    return next(n for n, t in doc["tensors"].items() if t["bits"] == 4)


EDITS = {     # the tampered copies: name -> edit(doc, arrays)
    "shift F": lambda d, a: _step(d, "Conv")["op"]["requant"].update(shift=20),
    "input scale": lambda d, a: d["tensors"][d["input"]].update(scale=2 * d["tensors"][d["input"]]["scale"]),
    "rewired add": lambda d, a: _step(d, "Add").update(inputs=[_step(d, "Add")["inputs"][0]] * 2),
    "permutation": _set_array(lambda d: next(t["permutation"]["array"] for t in d["tensors"].values()
                                             if t["permutation"]), None),
    "zero-point": lambda d, a: d["tensors"][_four_bit(d)].update(zero_point=99),
    "clamp hi": lambda d, a: d["steps"][-1]["op"]["requant"].update(hi=15),
    "network size": lambda d, a: d.setdefault("network", {}).update(size=64),
    "M beyond 24 bits": _set_array(lambda d: _step(d, "Conv")["op"]["requant"]["multiplier"]["array"], 2 ** 23 + 5),
    "M = 2^40": _set_array(lambda d: _step(d, "Conv")["op"]["requant"]["multiplier"]["array"], 2 ** 40),
    "B = 2^62": _set_array(lambda d: _step(d, "Conv")["op"]["requant"]["offset"]["array"], 2 ** 62),
    "ISG codes out of storage order": lambda d, a: a.update(
        {d["steps"][1]["op"]["isg_codes"]["array"]: torch.arange(16) % 2}),
}
# What `validate` says of each edit that breaks the spec even when re-signed.
RESEALED = {
    "zero-point": "zero_point=99 does not fit an unsigned 4-bit code",
    "permutation": "is not a permutation of its 16 channels",
    "M beyond 24 bits": "8388613 lies outside the 24-bit signed multiplier",
    "M = 2^40": "1099511627776 lies outside the 24-bit signed multiplier",
    "B = 2^62": "t = S\\*M \\+ B overflows 57 bits",
    "ISG codes out of storage order": "ISG codes are not one per K-tile of 16 stored channels",
}


@pytest.mark.parametrize("name", EDITS)
def test_tampered_artifacts_are_refused(runs, tmp_path, name):
    """Edited by hand, every copy is refused as edited; re-signed, each one that breaks the spec
    is refused by `validate`, naming the step or tensor and the field."""
    integer, perms = export.integer_network(runs["ioso"][0])
    path = artifact.save(tmp_path / "a", integer, perms, {"network": {"channels": 3, "size": SIZE}})
    _tamper(path, EDITS[name], reseal=False)
    with pytest.raises(PyiosoError, match="edited after export"):
        artifact.load(path)
    if name in RESEALED:
        path = artifact.save(tmp_path / "a", integer, perms, {"network": {"channels": 3, "size": SIZE}})
        _tamper(path, EDITS[name], reseal=True)
        with pytest.raises(PyiosoError, match=RESEALED[name]) as err:
            artifact.load(path)
        assert "step " in str(err.value) or "tensor " in str(err.value)


def test_validate_checks_wiring_and_codings(runs, tmp_path):
    integer, perms = export.integer_network(runs["ioso"][0])

    def refused(edit, message):
        path = artifact.save(tmp_path / "a", integer, perms, {"network": {"channels": 3}})
        _tamper(path, edit, reseal=True)
        with pytest.raises(PyiosoError, match=message):
            artifact.load(path)

    def cross_add(d, a):        # the second block's add (32 channels) reads the stem's 16
        add = [s for s in d["steps"] if s["op"]["type"] == "Add"][-1]
        add["inputs"][0] = d["steps"][0]["output"]
    refused(cross_add, "step .*: (adds tensors of 16 and 32 channels|input 1 .* differ from tensor)")

    def other_zero_point(d, a):
        conv = d["steps"][1]
        tensor = d["tensors"][conv["inputs"][0]]
        tensor["zero_point"] = (tensor["zero_point"] + 1) % 2 ** tensor["bits"]
    refused(other_zero_point, "step .*: (requant output|input) \\(bits .*\\) differ from tensor")
    refused(lambda d, a: d["tensors"][d["input"]].update(scale=-1.0), "tensor 'x': scale -1.0")


class TopLevelAdd(nn.Module):
    """A residual add in the model's own forward, in no block module."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.conv1 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.relu(self.conv2(self.conv1(x)) + x))


def test_a_residual_add_of_ones_own_forward_is_a_block(images):
    """Issue 25: block detection came from module types only, so this add's convs were
    reconstructed one by one; the graph makes them one block with the add."""
    from pyioso.calib import blocks

    torch.manual_seed(0)
    net = qnet.build(TopLevelAdd().eval(), images[:8], 4, 4)
    assert [[n.name for n in s.nodes] for s in blocks.segments(net)] == [
        ["stem.0"], ["conv1.0", "conv2.0", "add"], ["head.0", "head.2"]]
    assert [s.name for s in blocks.segments(net, "layer")] == ["stem.0", "conv1.0", "conv2.0", "head.2"]


def test_unsupported_layer_is_named(images):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10)).eval()
    with pytest.raises(PyiosoError, match="GELU.*supported"):
        qnet.build(model, images[:4], 4, 4)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_oso_schedule_sets_only_osos_learning_rate(images, monkeypatch, schedule):
    """--oso-schedule cosine: OSO's parameters start each stage at lr and decay to almost zero by its
    end; the rounding and ISG variables keep lr throughout (constant: OSO keeps it too, in their group)."""
    config = calibrate.Config(w_bits=2, a_bits=4, iters=ITERS, act_iters=20, batch=16, oso_schedule=schedule)
    net = qnet.build(_model(), images[:32], config.w_bits, config.a_bits)
    kinds = {id(p): "oso" if name.endswith(("oso_scale", "oso_offset")) else "step" if name.endswith("act.scale")
             else "other" for name, p in net.named_parameters()}
    rates = {"oso": set(), "other": set(), "step": set(), "mixed": set()}     # the lr of every step, per group kind
    step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        for g in self.param_groups:
            found = {kinds.get(id(p), "other") for p in g["params"]}      # AdaRound's V is not a net parameter
            rates[found.pop() if len(found) == 1 else "mixed"].add(g["lr"])
        return step(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    calibrate.Calibrator(net, images, config, None, fingerprint="tiny", progress=False, only={"blocks.0"}).run()
    assert max(rates["step"]) == config.act_lr
    if schedule == "cosine":
        assert rates["other"] == {config.lr} and not rates["mixed"]
        assert max(rates["oso"]) == config.lr and min(rates["oso"]) < config.lr * 0.01
    else:           # with the rounding variables in the weight stage, alone in the activation stage
        assert rates["mixed"] == rates["oso"] == {config.lr}


@pytest.mark.parametrize("settings, named", [({"oso_logits": False}, ()),
                                             ({"oso_off": "blocks.1.conv2, fc"}, ("blocks.1.conv2", "fc"))])
def test_layers_left_without_oso(images, tmp_path, settings, named):
    """--no-oso-logits (the layer writing the logits) and --no-oso-on (the layers named): every
    other conv/FC learns OSO; these keep none (identity) through the calibration and in its
    checkpoint."""
    net, cal = _calibrate(images, out=tmp_path, method="ioso", **settings)
    layers = [n for n in net.nodes if n.kind in ("conv", "fc")]
    off = [n for n in layers if n.name in named or n.output == net.output_name]
    assert {n.name for n in off} >= set(named) and off
    assert not any(net.op(n).oso for n in off) and all(net.op(n).oso for n in layers if n not in off)
    assert all(bool((net.op(n).oso_scale == 1).all()) and bool((net.op(n).oso_offset == 0).all()) for n in off)
    restored = qnet.build(_model(), images[:32], 2, 4)
    calibrate.restore(restored, torch.load(tmp_path / calibrate.CHECKPOINT, weights_only=False))
    assert [m.oso for m in restored.ops.values() if hasattr(m, "oso")] == \
        [m.oso for m in net.ops.values() if hasattr(m, "oso")]


@pytest.mark.parametrize("kw, match", [({"method": "gptq"}, "method 'gptq'"),
                                       ({"base": "adaround"}, "base 'adaround'"),
                                       ({"iters": 0}, "iters"),
                                       ({"act_init": "zero"}, "act_init 'zero': use one of float, quantized"),
                                       ({"method": "qdrop", "act_init": "quantized"}, "before an activation stage"),
                                       ({"oso_schedule": "linear"}, "oso_schedule 'linear': use one of constant, cosine"),
                                       ({"method": "brecq", "oso_schedule": "cosine"}, "only ioso"),
                                       ({"oso_scale": False, "oso_offset": False, "oso_schedule": "cosine"}, "only ioso"),
                                       ({"method": "brecq", "oso_logits": False}, "only ioso"),
                                       ({"method": "qdrop", "oso_off": ("fc",)}, "only ioso")])
def test_bad_settings(kw, match):
    with pytest.raises(PyiosoError, match=match):
        calibrate.Config(**kw)


def test_bad_bits_and_weights(tmp_path, images):
    with pytest.raises(PyiosoError, match="w_bits"):
        qnet.build(_model(), images[:4], 9, 4)
    wrong = tmp_path / "wrong.pt"
    torch.save(_model().state_dict(), wrong)
    with pytest.raises(PyiosoError, match="does not match resnet18"):
        workflow.Run("resnet18", str(wrong)).model(0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PyiosoError, match="no images"):
        workflow.Run("resnet18", "random", data=str(tmp_path / "empty"), size=16).calibration_set(0)


def test_a_refused_run_writes_nothing(tmp_path):
    """Issue 26: bad weights once left an --out folder with an empty calibrate.log, an --out
    naming a file ended in a bare FileExistsError, and a folder of another calibration had its
    run.json overwritten before the refusal."""
    config = calibrate.Config.named("ioso", "brecq", w_bits=4, a_bits=4)
    out = tmp_path / "run"
    with pytest.raises(PyiosoError, match="does not exist|no such"):
        workflow.calibrate_network(workflow.Run("resnet18", str(tmp_path / "missing.pt")), config, out)
    assert not out.exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(PyiosoError, match="is a file: give a directory"):
        workflow.calibrate_network(workflow.Run("resnet18", "random"), config, tmp_path / "file")
    out.mkdir()
    (out / workflow.RUN).write_text(json.dumps({"run": {"net": "resnet18"}, "config": {"w_bits": 2}}))
    before = sorted(out.iterdir())
    with pytest.raises(PyiosoError, match="holds a calibration with other settings"):
        workflow.calibrate_network(workflow.Run("resnet18", "random"), config, out)
    assert sorted(out.iterdir()) == before and "w_bits" in (out / workflow.RUN).read_text()
    unknown = dataclasses.replace(config, oso_off=("layer4.1.conv3",))
    with pytest.raises(PyiosoError, match=r"names layer4.1.conv3, not a conv or FC layer.*layer4.1.conv2, fc"):
        workflow.calibrate_network(workflow.Run("resnet18", "random"), unknown, tmp_path / "other")
    assert not (tmp_path / "other").exists()


class TinyRun(workflow.Run):
    def model(self, seed: int) -> nn.Module:
        return _model()


def test_a_busy_folder_is_refused_and_ctrl_c_says_what_was_kept(tmp_path, monkeypatch):
    """Issue 26: two calibrations into one --out ran interleaved (each log line twice), and
    Ctrl-C ended in a KeyboardInterrupt traceback. Issue 25: a finished run kept its 171 MB
    checkpoint.pt beside calibrated.pt."""
    import fcntl

    config = calibrate.Config.named("ioso", "brecq", w_bits=4, a_bits=4, iters=2, act_iters=1, batch=4)
    run, out = TinyRun("tiny", "random", size=16, images=8), tmp_path / "run"
    out.mkdir()
    with open(out / workflow.LOCK, "w") as held:        # another calibration holds the folder
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242")
        held.flush()
        with pytest.raises(PyiosoError, match=r"in use by a calibration running now \(pid 4242\)"):
            workflow.calibrate_network(run, config, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [workflow.LOCK]

    save = calibrate.Calibrator._checkpoint

    def interrupted(self, *args):       # Ctrl-C right after the first block is saved
        save(self, *args)
        raise KeyboardInterrupt
    monkeypatch.setattr(calibrate.Calibrator, "_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt, match=f"saved in {out / calibrate.CHECKPOINT}: the same command resumes"):
        workflow.calibrate_network(run, config, out, progress=False)
    assert (out / calibrate.CHECKPOINT).is_file()
    with open(out / workflow.LOCK) as lock:             # released: no pid left behind
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert lock.read() == ""

    monkeypatch.setattr(calibrate.Calibrator, "_checkpoint", save)
    saved = torch.load(out / calibrate.CHECKPOINT, weights_only=False)["seconds"]
    first = workflow.calibrate_network(run, config, out, progress=False)    # resumes and finishes
    assert (out / workflow.FINAL).is_file() and not (out / calibrate.CHECKPOINT).exists()
    assert first["resumed_seconds"] == saved > 0       # the interrupted run's time counts in the total
    manifest = (out / workflow.ARTIFACT / artifact.MANIFEST).read_bytes()
    monkeypatch.setattr(calibrate.Calibrator, "run", None)     # a finished folder is not recalibrated
    again = workflow.calibrate_network(run, config, out, progress=False)
    assert again["history"] == json.loads(json.dumps(first["history"]))
    assert (out / workflow.ARTIFACT / artifact.MANIFEST).read_bytes() == manifest


class FileRun(workflow.Run):
    def model(self, seed: int) -> nn.Module:
        model = _model()
        model.load_state_dict(torch.load(self.weights))
        return model


def test_a_finished_folder_of_weights_retrained_in_place_is_refused(tmp_path):
    """A checkpoint retrained in place (the same path, other weights: pyioso train on another CPU
    model) passed for the finished calibration of the old one, whose result was then reused on
    the new weights."""
    weights = tmp_path / "tiny.pt"
    torch.save(_model().state_dict(), weights)
    config = calibrate.Config.named("ioso", "brecq", w_bits=4, a_bits=4, iters=2, act_iters=1, batch=4)
    run, out = FileRun("tiny", str(weights), size=16, images=8), tmp_path / "run"
    workflow.calibrate_network(run, config, out, progress=False)
    workflow.calibrate_network(run, config, out, progress=False)        # the same weights: reused
    retrained = _model()
    with torch.no_grad():
        retrained.fc.weight.mul_(1.5)
    torch.save(retrained.state_dict(), weights)
    with pytest.raises(PyiosoError, match="other float weights or calibration images .* remove the folder"):
        workflow.calibrate_network(run, config, out, progress=False)


SMALLNET = """
from torch import nn


class SmallNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


def build(num_classes):
    return SmallNet(num_classes)
"""


def test_a_network_of_ones_own_calibrates_evaluates_and_exports(tmp_path, monkeypatch):
    """Issue 25: a custom network needed a subclass of workflow.Run, and then eval and export
    failed with "unknown network" (they rebuild the model from run.json by name)."""
    (tmp_path / "smallnet_for_test.py").write_text(SMALLNET)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = calibrate.Config.named("ioso", "brecq", w_bits=4, a_bits=4, iters=2, act_iters=1, batch=4)
    run, out = workflow.Run("smallnet_for_test:build", "random", size=16, images=8), tmp_path / "run"
    workflow.calibrate_network(run, config, out, progress=False)
    result = workflow.evaluate(out, images=16, progress=False)          # rebuilt from run.json
    assert result["integer_agreement"] is not None and result["images"] == 16
    net, _, _ = workflow.calibrated_network(out)
    assert workflow.export_network(net, run, config, tmp_path / "again").is_dir()
    # ... and as a QDQ ONNX model, run under onnxruntime next to the fake-quant network
    assert cli.main(["export", "--run", str(out), "--onnx", str(tmp_path / "small.onnx"), "--images", "16",
                     "--quiet"]) == 0
    checked = json.loads((tmp_path / "small.json").read_text())
    assert checked["images"] == 16 and checked["onnx_agreement"] >= 90
    with pytest.raises(PyiosoError, match="'nowhere_module' cannot be imported"):
        workflow.Run("nowhere_module:build", "random").model(0)
    with pytest.raises(PyiosoError, match="has no callable 'missing'"):
        workflow.Run("smallnet_for_test:missing", "random").model(0)


def test_eval_without_its_artifact_is_refused(tmp_path):
    """Issue 26: `pyioso eval` on a run whose artifact/ was deleted dropped the integer row
    without a word."""
    config = calibrate.Config.named("ioso", "brecq", w_bits=4, a_bits=4)
    run = workflow.Run("resnet18", "random", size=16, images=8)
    (tmp_path / workflow.RUN).write_text(json.dumps({"run": run.__dict__, "config": config.to_json()}))
    with pytest.raises(PyiosoError, match=r"artifact is missing.*pyioso export --run"):
        workflow.evaluate(tmp_path, images=4, progress=False, net=object())


@pytest.mark.parametrize("wrap", ["plain", "dataparallel", "no-metadata"])
def test_mnasnet_weights_load_with_their_module_versions(tmp_path, wrap):
    """torchvision's MnasNet refuses a state_dict whose module versions (_metadata) were lost."""
    from pyioso.models import tv
    from pyioso.models.weights import load_model

    source = tv.build_model("mnasnet1_0", 10, seed=3)
    state = (torch.nn.DataParallel(source) if wrap == "dataparallel" else source).state_dict()
    if wrap == "no-metadata":
        state = dict(state)
    torch.save(state, tmp_path / "w.pt")
    loaded = load_model("mnasnet1_0", str(tmp_path / "w.pt"), 10)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), source.state_dict().values()))


def test_a_depthwise_channel_behind_a_dead_relu_channel_exports(images):
    """BN folding scales such a channel's weights by gamma / sigma, sigma ~ 0 (mnasnet1_0:
    alpha' 18,000x the layer's median, beyond ARCHITECTURE §3's limit); its weights become zero."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    with torch.no_grad():
        model[1].bias[2] = -1e3             # channel 2 never passes the ReLU
        model[4].running_var[2] = 1e-9      # the BN behind it saw a constant
    net = qnet.build(model, images[:32], w_bits=4, a_bits=4)
    net.set_quant(weights=True, acts=True)
    depthwise = net.op(next(n for n in net.nodes if n.name == "3"))
    assert depthwise.weight[2].abs().sum() == 0 and depthwise.weight[[0, 1, 3]].abs().sum() > 0
    integer, _ = export.integer_network(net)
    test = calibration_images(64, SIZE, 7)
    codes, fake_codes = _logit_codes(net, integer, test)
    assert (codes - fake_codes).abs().max() <= 1
    assert (codes.argmax(1) == fake_codes.argmax(1)).double().mean() >= 0.95


def test_every_observer_sets_the_codings_through_the_cli(tmp_path, monkeypatch):
    """pyioso calibrate --observer/--weight-observer (the lecture's clipping methods): each name
    reaches the run's config and the exported artifact, and picks its own clipping ranges: the
    min/max range is the widest, the clipping ones are narrower somewhere."""
    (tmp_path / "smallnet_for_test.py").write_text(SMALLNET)
    monkeypatch.syspath_prepend(str(tmp_path))
    scales = {}
    for name in OBSERVERS:
        out = tmp_path / name
        assert cli.main(["calibrate", "--net", "smallnet_for_test:build", "--weights", "random", "--size", "16",
                         "--method", "rtn", "--images", "32", "--observer", name, "--weight-observer", name,
                         "--out", str(out)]) == 0
        doc = json.loads((out / "artifact" / "manifest.json").read_text())
        config = doc["calibration"]["config"]
        assert config["observer"] == config["weight_observer"] == name
        scales[name] = torch.tensor([t["scale"] for t in doc["tensors"].values()])
    assert all((scales["minmax"] >= s * (1 - 1e-6)).all() for s in scales.values())
    for name in ("mse", "kl", "percentile"):
        assert (scales[name] < scales["minmax"] * (1 - 1e-6)).any(), name
    assert not torch.equal(scales["ema"], scales["minmax"])     # a moving average, not the extremes


def test_unknown_observer_is_refused():
    with pytest.raises(PyiosoError, match=r"observer 'l1': use one of minmax, ema, mse, kl, percentile"):
        calibrate.Config(observer="l1")


def test_asymmetric_weight_grid_is_the_references_and_is_not_exported(images):
    """--weight-grid asymmetric: an integer zero point per output channel on the unsigned grid (as
    BRECQ's and QDrop's quantizers), which the engine does not run, so export refuses it."""
    net = qnet.build(_model(), images[:32], 2, 4, weights=qnet.WeightFormat(symmetric=False))
    convs = [m for m in net.ops.values() if isinstance(m, qnet.QConv)]
    assert any(bool((c.w_zero != 0).any()) for c in convs)
    for c in convs:
        codes = c.weight_codes()
        assert int(codes.min()) >= 0 and int(codes.max()) <= 2 ** c.w_bits - 1
        zero = c.w_zero[:, None, None, None]
        assert torch.equal(c.rounding(), (codes - zero) * c.w_scale[:, None, None, None])
    config = calibrate.Config(w_bits=2, a_bits=4, weight_grid="asymmetric")
    assert not workflow.exportable(config)
    net.set_quant(True, True)
    with pytest.raises(PyiosoError, match="--weight-grid asymmetric"):
        export.integer_network(net)
    with pytest.raises(PyiosoError, match="weight_grid 'skewed'"):
        calibrate.Config(weight_grid="skewed")


@pytest.mark.parametrize("base, eight_bit", [("brecq", "stem.0"), ("qdrop", "add_1")])
def test_reference_points_quantize_what_the_reference_code_does(images, base, eight_bit):
    """--act-points reference: the input image, the convs before a residual add and the
    classifier's input and logits stay float; BRECQ's stem output and QDrop's last block output
    take 8 bits. The tensors left float are exactly the float network's; export refuses it."""
    config = calibrate.Config.named(base, w_bits=2, a_bits=4, act_points="reference", iters=2, act_iters=2)
    assert config.quant_points == base and not workflow.exportable(config)
    net = workflow.quantized_network(_model(), config, images[:32])
    kept = {t for t in (net.input_name, *(n.output for n in net.nodes)) if net.coding(t).kept_float}
    pre_add = {n.output for n in net.nodes if n.name.endswith(("conv2", "downsample.0"))}
    assert len(pre_add) == 3        # two blocks' last convs and one downsample
    assert kept == {net.input_name, net.nodes[-1].output, net.nodes[-1].inputs[0], *pre_add}
    bits = {n.name: net.op(n).act.bits for n in net.nodes if hasattr(net.op(n), "act") and n.output not in kept}
    assert {name for name, b in bits.items() if b == 8} == {eight_bit}
    net.set_quant(True, True)
    x = images[:8]
    values = net.run({net.input_name: net.quantize_input(x)}, net.nodes)
    assert torch.equal(values[net.input_name], x)
    calibrate.Calibrator(net, images[:64], config, progress=False).run()
    with torch.no_grad():           # float logits are compared as they are, not rounded to a coding
        assert torch.equal(workflow.logit_codes(net, x), net(x))
    with pytest.raises(PyiosoError, match="--act-points engine to export"):
        export.integer_network(net)
    with pytest.raises(PyiosoError, match="act_points 'all'"):
        calibrate.Config(act_points="all")
