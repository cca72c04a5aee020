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


@pytest.mark.parametrize("argv, message", [
    (["--shape", "0,0,0,0,0,0,0"], "SHAPE='0,0,0,0,0,0,0': H=0 is out of range: use 1 or more"),
    (["--shape", "8,8,16,0,3,1,1"], "COUT=0 is out of range: use 1 or more"),
    (["--shape", "8,8,16,16,3,0,1"], "STRIDE=0 is out of range"),
    (["--shape", "8,8,16,16,3,1"], "give seven or eight integers"),
])
def test_bad_shapes_are_refused_naming_the_field(capsys, argv, message):
    """Issue 26: SHAPE=0,0,0,0,0,0,0 said "group sizes [16, 0, -16] contain a negative size", and
    COUT=0 ended in "max(): Expected reduction dim"."""
    from sim import layer

    assert layer.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("module, argv, flag", [
    ("sim.layer", ["--shape", "8,8,16,16,3,1,1", "--wbits", "0"], "--wbits: 0 is out of range"),
    ("sim.net", ["--net", "resnet18", "--size", "-5"], "--size: -5 is out of range"),
    ("sim.random_layers", ["--n", "0"], "--n: 0 is out of range"),
    ("sim.chain", ["--images", "0"], "--images: 0 is out of range"),
    ("bench.accuracy.__main__", ["--seeds", "0"], "--seeds: 0 is out of range"),
])
def test_bad_numbers_are_refused_while_parsing(capsys, module, argv, flag):
    """Issue 26: every make variable that reaches a number flag is refused while parsing."""
    import importlib

    main = importlib.import_module(module)
    with pytest.raises(SystemExit) as exit_:
        main.main(argv)
    assert exit_.value.code == 2 and flag in capsys.readouterr().err
