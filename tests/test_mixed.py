"""Mixed precision: per-layer weight bits from a measured sensitivity under a memory budget,
recorded in run.json, exported and run like uniform bits."""

import json

import pytest
import torch

from golden.errors import PyiosoError
from pyioso.calib import calibrate, mixed, qnet, workflow
from pyioso.cli import main as cli
from tests.test_calibrate import SMALLNET, _model


def test_allocation_spends_the_budget_where_it_costs_least():
    sens = {"a": {2: 5.0, 3: 1.0, 4: 0.5}, "b": {2: 0.2, 3: 0.1, 4: 0.0}, "c": {2: 9.0, 3: 2.0, 4: 0.1}}
    sizes = {"a": 100, "b": 100, "c": 100}
    assert mixed.allocate(sens, sizes, 4.0) == {"a": 4, "b": 4, "c": 4}
    bits = mixed.allocate(sens, sizes, 3.0)
    assert mixed.average_bits(bits, sizes) <= 3.0
    assert bits == {"a": 3, "b": 2, "c": 4}          # b is nearly free to cut; c is not
    assert mixed.allocate(sens, sizes, 2.0) == {"a": 2, "b": 2, "c": 2}
    with pytest.raises(PyiosoError, match="below the narrowest width 2"):
        mixed.allocate(sens, sizes, 1.5)


def test_sensitivity_falls_with_bits_and_layer_bits_build():
    images = torch.randn(64, 3, 16, 16)
    net = qnet.build(_model(), images[:32], 4, 4)
    layers = mixed.budget_layers(net, 4)
    assert layers and all(c.w_bits == 4 for c in layers.values())
    sens = mixed.sensitivity(net, images, layers)
    assert sum(s[2] for s in sens.values()) > sum(s[4] for s in sens.values()) >= 0
    name = next(iter(layers))
    built = qnet.build(_model(), images[:32], 4, 4, layer_bits={name: 2})
    assert {n.name: built.op(n).w_bits for n in built.nodes if n.name == name} == {name: 2}
    with pytest.raises(PyiosoError, match="not a conv/FC between the network's first and last"):
        qnet.build(_model(), images[:32], 4, 4, layer_bits={"stem.0": 2})
    with pytest.raises(PyiosoError, match="out of range"):
        qnet.build(_model(), images[:32], 4, 4, layer_bits={name: 9})


def _calibrate_small(tmp_path, monkeypatch, *options: str) -> tuple[list[str], dict]:
    """`pyioso calibrate` of a small network with `options` (bits, method, budget): its argv and
    the config run.json recorded."""
    (tmp_path / "smallnet_for_test.py").write_text(SMALLNET)
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["calibrate", "--net", "smallnet_for_test:build", "--weights", "random", "--size", "16", "--images", "32",
            "--abits", "4", "--iters", "2", "--act-iters", "1", "--out", str(tmp_path / "mixed"), "--quiet", *options]
    assert cli.main(argv) == 0
    return argv, json.loads((tmp_path / "mixed" / workflow.RUN).read_text())["config"]


def test_calibrate_with_a_budget_records_the_bits_and_exports_them(tmp_path, monkeypatch, capsys):
    argv, config = _calibrate_small(tmp_path, monkeypatch, "--wbits", "3", "--method", "brecq+ioso",
                                    "--mixed-budget", "2")
    out = tmp_path / "mixed"
    assert "per-layer weight bits: body.0 2" in capsys.readouterr().out
    assert config["layer_w_bits"] == [["body.0", 2]] and config["mixed_budget"] == 2
    manifest = json.loads((out / workflow.ARTIFACT / "manifest.json").read_text())
    assert "2" in json.dumps(manifest)
    net = workflow.calibrated_network(out)[0]               # rebuilt with the recorded bits
    assert {n.name: net.op(n).w_bits for n in net.nodes if n.kind in ("conv", "fc")} == \
        {"stem.0": 8, "body.0": 2, "head.2": 8}
    assert workflow.evaluate(out, images=16, progress=False)["integer_agreement"] is not None
    assert cli.main(argv) == 0                              # the same command: the same choice, resumed
    with pytest.raises(PyiosoError, match="mixed_budget 1.0"):
        calibrate.Config(mixed_budget=1.0)


def test_activation_sensitivity_falls_with_bits_and_tensor_bits_build():
    images = torch.randn(64, 3, 16, 16)
    net = qnet.build(_model(), images[:32], 4, 4)
    tensors = mixed.budget_tensors(net, 4)
    last = net.nodes[-1]
    assert tensors and last.name not in tensors     # the logits and the classifier's input stay 8-bit
    assert all(net.coding(n.output).bits == 4 for n in net.nodes if n.name in tensors)
    sens, sizes = mixed.act_sensitivity(net, images, tensors)
    assert set(sens) == set(sizes) == set(tensors) and all(s > 0 for s in sizes.values())
    assert sum(s[2] for s in sens.values()) > sum(s[4] for s in sens.values()) >= 0
    assert all(a.bits == 4 and not a.enabled for a in tensors.values())    # left as found
    name = next(iter(tensors))
    built = qnet.build(_model(), images[:32], 4, 4, tensor_bits={name: 2})
    assert {n.name: built.op(n).act.bits for n in built.nodes if n.name == name} == {name: 2}
    with pytest.raises(PyiosoError, match="not an op writing a middle tensor"):
        qnet.build(_model(), images[:32], 4, 4, tensor_bits={last.name: 2})
    with pytest.raises(PyiosoError, match="out of range"):
        qnet.build(_model(), images[:32], 4, 4, tensor_bits={name: 9})


def test_calibrate_with_an_activation_budget_records_the_bits_and_exports_them(tmp_path, monkeypatch, capsys):
    _, config = _calibrate_small(tmp_path, monkeypatch, "--wbits", "4", "--method", "brecq",
                                 "--mixed-act-budget", "2")
    out = tmp_path / "mixed"
    chosen = dict(config["layer_a_bits"])
    assert chosen and set(chosen.values()) == {2} and config["mixed_act_budget"] == 2
    assert "per-tensor activation bits: " in capsys.readouterr().out
    net = workflow.calibrated_network(out)[0]               # rebuilt with the recorded bits
    assert {n.name: net.op(n).act.bits for n in net.nodes if n.name in chosen} == chosen
    assert workflow.evaluate(out, images=16, progress=False)["integer_agreement"] == 100.0
    with pytest.raises(PyiosoError, match="mixed_act_budget 3.0: .* quantized activations"):
        calibrate.Config(a_bits=None, mixed_act_budget=3.0)
