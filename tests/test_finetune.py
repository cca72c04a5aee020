"""pyioso finetune: quantization-aware training that starts at the calibrated network, learns
through the STE, keeps what the hardware fixes, and ends as an integer network like any other."""

import json

import pytest
import torch

from golden.errors import PyiosoError
from pyioso.calib import calibrate, finetune, workflow
from pyioso.calib.qnet import QConv
from pyioso.cli import main as cli
from pyioso.quant.levels import TernaryRounding
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
