"""sim/net.py: resnet18's first layers through the engine RTL fed by the integer network's golden
codes, bit-exact; refused layers listed, not dropped."""

from dataclasses import replace

import pytest

from hw.params import EngineParams
from pyioso.data.datasets import sample_photos
from pyioso.integer import rtn
from sim import net


@pytest.fixture(scope="module")
def resnet18_runs():
    return net.golden_runs("resnet18", size=32, w_bits=4, a_bits=4, seed=0)


def test_first_resnet18_layers_are_bit_exact(resnet18_runs):
    reports, skipped = net.simulate_runs(resnet18_runs[:3], EngineParams())
    assert skipped == []
    assert [r["layer"] for r in reports] == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
    assert reports[0]["shape"]["c_in"] == 3 and reports[0]["bits"]["activations"] == 8
    for r in reports:
        assert r["outputs_checked"] > 0 and r["mismatches"] == 0, r["first_mismatch"]
        assert r["model_cycles"] == r["cycles"]
    total = net.totals(reports)
    assert total["mismatches"] == total["model_disagreements"] == 0
    assert total["cycles"] >= total["ideal_cycles"] > 0
    assert "total" in net.summary_table(reports, total)


def test_refused_layers_are_listed_with_the_reason():
    """A layer the engine cannot run (here a depthwise layer made dilated) is listed with the
    driver's reason, and nothing is simulated."""
    model = rtn.build("mobilenet_v2", size=32)
    _, runs = model.forward(model.quantize_input(sample_photos(1, 32)), record=True)
    depthwise = next(run for run in runs if run.layer.depthwise)
    dilated = replace(depthwise, layer=replace(depthwise.layer, dilation=(2, 2), padding=(2, 2)))
    reports, skipped = net.simulate_runs([dilated], EngineParams())    # no engine build
    assert reports == []
    assert skipped == [{"layer": dilated.path, "reason": net.refusal(dilated, EngineParams())}]
    assert "dilation (2, 2) is not supported by the engine" in skipped[0]["reason"]


def test_unknown_network_exits_2(capsys):
    assert net.main(["--net", "vgg16", "--size", "32"]) == 2
    assert "unknown network" in capsys.readouterr().err
