"""pyioso finetune: quantization-aware training that starts at the calibrated network, learns
through the STE, keeps what the hardware fixes, and ends as an integer network like any other."""

import json

import pytest
import torch

from golden.errors import PyiosoError
from pyioso.calib import calibrate, export, finetune, ties, workflow
from pyioso.calib.qnet import QConv
from pyioso.cli import main as cli
from pyioso.quant.layer import encode
from pyioso.quant.levels import TernaryRounding, TtqRounding
from tests.test_calibrate import SMALLNET


@pytest.fixture()
def calibrated(tmp_path, monkeypatch):
    (tmp_path / "smallnet_for_test.py").write_text(SMALLNET)
    monkeypatch.syspath_prepend(str(tmp_path))
    run = workflow.Run("smallnet_for_test:build", "random", size=16, images=16)

    def calibrate_in(name: str, **settings):
        config = calibrate.Config.named("brecq+ioso", w_bits=2, a_bits=4, iters=4, act_iters=2, batch=4, **settings)
        workflow.calibrate_network(run, config, tmp_path / name, progress=False)
        return tmp_path / name
    return calibrate_in


@pytest.mark.parametrize("levels", ["uniform", "ternary", "binary"])
def test_the_first_step_is_the_calibration_and_the_end_keeps_its_codes(calibrated, levels):
    net = workflow.calibrated_network(calibrated(levels, weight_levels=levels))[0]
    convs = [m for m in net.ops.values() if isinstance(m, QConv)]
    x = torch.randn(8, 3, 16, 16)
    with torch.no_grad():
        before = net(x)
    weights, steps, _ = finetune.learned(net)
    assert len(weights) == len(convs) and steps
    with torch.no_grad():
        assert torch.equal(net(x), before)          # latent weights start on their codes
        for w in weights:                           # move every latent weight, then freeze
            w.weight.add_(torch.randn_like(w.weight) * w.scale.view(-1, 1, 1, 1))
        codes = [c.weight_codes() for c in convs]
        moved = net(x)
    finetune.freeze(net)
    with torch.no_grad():
        assert torch.equal(net(x), moved)           # the frozen roundings give the STE's codes
    assert all(torch.equal(c.weight_codes(), k) for c, k in zip(convs, codes))
    middle = convs[1]
    assert {int(v) for v in middle.weight_codes().unique()} <= {"uniform": {-2, -1, 0, 1}, "ternary": {-1, 0, 1},
                                                                 "binary": {-1, 1}}[levels]
    assert isinstance(middle.rounding, TernaryRounding) == (levels == "ternary")


def _refused(argv: list[str], capsys) -> str:
    assert cli.main(argv) == 2
    return capsys.readouterr().err


def test_finetune_command_trains_exports_and_resumes(calibrated, tmp_path, capsys):
    run = calibrated("run")
    argv = ["finetune", "--run", str(run), "--out", str(tmp_path / "qat"), "--images", "64", "--batch", "16",
            "--threads", "1", "--quiet"]
    assert cli.main(argv) == 0
    epochs = json.loads((tmp_path / "qat" / workflow.FINETUNE).read_text())
    assert len(epochs) == 1 and epochs[0]["loss"] > 0
    result = workflow.evaluate(tmp_path / "qat", images=32, progress=False)    # rebuilt from its folder
    assert result["integer_agreement"] is not None and result["max_logit_code_diff"] <= 2
    stamp = (tmp_path / "qat" / workflow.FINAL).stat().st_mtime_ns
    assert cli.main(argv) == 0                      # finished: reused, not trained again
    assert (tmp_path / "qat" / workflow.FINAL).stat().st_mtime_ns == stamp
    assert "give another --out" in _refused(["finetune", "--run", str(run), "--out", str(run), "--quiet"], capsys)
    assert "other settings" in _refused([*argv[:-1], "--lr", "1e-3", "--quiet"], capsys)
    weights_only = calibrate.Config.named("brecq", w_bits=2, a_bits=None, iters=2, batch=4)
    workflow.calibrate_network(workflow.Run("smallnet_for_test:build", "random", size=16, images=8), weights_only,
                               tmp_path / "w2", progress=False)
    assert "finetune keeps a network the engine runs" in _refused(
        ["finetune", "--run", str(tmp_path / "w2"), "--out", str(tmp_path / "w2q"), "--quiet"], capsys)
    assert not (tmp_path / "w2q").exists()          # refused before any folder is written
    with pytest.raises(PyiosoError, match="epochs must be >= 1"):
        finetune.FinetuneConfig(epochs=0)


def test_ttq_learns_two_scales_per_channel_and_stays_fake_quant(calibrated, tmp_path, capsys):
    run = calibrated("ttq", weight_levels="ttq")
    assert not (run / workflow.ARTIFACT).exists()
    qat = tmp_path / "ttq_qat"
    assert cli.main(["finetune", "--run", str(run), "--out", str(qat), "--images", "64", "--batch", "16",
                     "--threads", "1", "--quiet"]) == 0
    assert "fake-quant only" in capsys.readouterr().out
    net = workflow.calibrated_network(qat)[0]              # rebuilt from the folder: the learned scales
    ttqs = [m.rounding for m in net.ops.values() if isinstance(m, QConv) and m.levels == "ttq"]
    assert ttqs and all(isinstance(r, TtqRounding) for r in ttqs)
    assert any(not torch.equal(r.scale, r.negative) for r in ttqs)
    assert all(set(r.codes().unique().tolist()) <= {-1.0, 0.0, 1.0} for r in ttqs)
    assert workflow.evaluate(qat, images=16, progress=False)["integer_agreement"] is None
    assert not (qat / workflow.ARTIFACT).exists()
    assert "positive and a negative scale per channel" in _refused(["export", "--run", str(qat), "--quiet"], capsys)


# Activation steps on a rounding tie: fake-quant rounds half to even in float32, the engine's
# fixed-point table half up, so a value that recurs exactly on a tie splits them (LSQ parks
# steps there). settle_ties moves such steps off the tie and leaves steps alone whose values
# merely spread over the grid.


def test_values_spread_over_the_grid_need_no_nudge_and_a_crowded_tie_gets_one():
    spread = torch.rand(100_000, generator=torch.Generator().manual_seed(0)) * 15
    assert ties.best_nudge(spread) == 0.0
    crowded = torch.cat([spread, torch.full((500,), 6.5)])
    nudge = ties.best_nudge(crowded)
    assert 0 < abs(nudge) <= 1e-3
    assert ties.on_ties(crowded / (1 + nudge)) < ties.on_ties(spread) + 8


def _stem_disagreement(net, images) -> int:
    """Output codes of the first layer where the integer layer and fake-quant differ."""
    int_net, perms = export.integer_network(net)
    step = int_net.steps[0]
    with torch.no_grad():
        fake = net.run({net.input_name: net.quantize_input(images)}, net.nodes[:1])[step.output]
    fake = encode(fake, net.coding(step.output).coding())
    fake = fake[..., perms[step.output]] if step.output in perms else fake
    return int((step.run(int_net.quantize_input(images)) != fake).sum())


def _ulps_away(x: torch.Tensor, n: int) -> torch.Tensor:
    """The float32 value n representable steps above (n > 0) or below x."""
    toward = torch.tensor(float("inf") if n > 0 else 0.0)
    for _ in range(abs(n)):
        x = torch.nextafter(x, toward)
    return x


def _park_on_a_tie(net, images, act, values) -> int:
    """Sets act's step so that one of `values` lies on an even rounding tie, within the few
    float32 ulps where the engine's fixed-point rounding splits from fake-quant's (which ulp
    depends on the calibration's floats); the output codes split, 0 if no value splits."""
    scale = act.scale.detach().clone()
    for value in values[values > 4 * scale]:
        k = int(value / scale) // 2 * 2
        tie = torch.tensor(float(value) / (k + 0.5))
        for ulps in (0, -1, 1, -2, 2, -3, 3):
            act.scale.data.fill_(float(_ulps_away(tie, ulps)))
            if split := _stem_disagreement(net, images):
                return split
    return 0


def test_a_step_parked_on_a_tie_is_moved_off_it_and_the_engine_agrees_again(calibrated):
    net = workflow.calibrated_network(calibrated("run"))[0]
    images = torch.full((32, 3, 16, 16), 0.7)              # flat backgrounds, as Fashion-MNIST's:
    images[:, :, 6:10, 6:10] = torch.randn(32, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    act = net.op(net.nodes[0]).act
    seen = {}
    hook = act.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0][0, :, 12, 12].clone()))
    with torch.no_grad():
        net(images[:1])
    hook.remove()
    parked = _park_on_a_tie(net, images, act, seen["x"])   # each channel repeats one stem value
    assert parked > 100, "no repeated stem value split fake-quant and the engine on its tie"
    nudged = ties.settle_ties(net, images)
    assert net.nodes[0].output in nudged and all(0 < abs(d) <= 1e-3 for d in nudged.values())
    assert _stem_disagreement(net, images) == 0
    assert ties.settle_ties(net, images) == {}              # settled: a second look moves nothing
