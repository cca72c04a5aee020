"""The library API on a network of one's own: define, train a few steps, quantize, evaluate,
export, load, run on golden and on the engine's RTL."""

import pytest
import torch
from torch import nn

import pyioso
from golden.errors import PyiosoError
from pyioso.data.datasets import FASHION, labelled_images

SIZE = 16


class SmallResNet(nn.Module):
    """Not from torchvision: a stem, one residual block written at the top level, pools small
    enough for the engine's 7x7 windows, a head."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        self.shrink, self.pool = nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        x = self.stem(x)
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.head(torch.flatten(self.pool(self.shrink(self.relu2(x + y))), 1))


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = SmallResNet()
    x, y = labelled_images(FASHION, "train", SIZE, 2048, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(300):         # about 68% top-1: enough to see quantization errors
        idx = torch.arange(step * 64, step * 64 + 64) % len(x)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), x


@pytest.fixture(scope="module")
def calibration(trained):
    model, x = trained
    return pyioso.quantize(model, x[:256], wbits=4, abits=4, method="ioso", iters=40, act_iters=10,
                           progress=False)


def test_quantize_evaluate_export_load_run_on_golden(trained, calibration, tmp_path):
    model, _ = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    test_x, test_y = labelled_images(FASHION, "test", SIZE, 500, seed=1)
    result = calibration.evaluate(test_x, test_y)
    assert set(result["top1"]) == {"float", "fake-quant", "integer"}
    assert result["top1"]["float"] > 60 and result["top1"]["fake-quant"] > result["top1"]["float"] - 10
    assert result["integer_agreement"] >= 98
    # the residual add at the top level of forward is one block with its convs (named by the add)
    assert [e["segment"] for e in calibration.history if e["stage"] == "weights"] == ["stem.0", "add", "head"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())    # the model is not changed
    path = calibration.export(tmp_path / "artifact", name="smallresnet")
    network = pyioso.load(path)
    assert network.name.startswith(f"smallresnet_{SIZE}px_")
    codes = network.run(test_x)
    assert codes.shape == (500, 10) and codes.dtype == torch.int64
    # golden on the loaded artifact = the calibration's own integer network, and within the
    # fixed-point tables' bound of the fake-quant logit codes (predictions as evaluate counted)
    assert torch.equal(codes, calibration.integer().forward(calibration.integer().quantize_input(test_x))[0])
    fake = calibration.logits(test_x)
    assert int((codes - fake).abs().max()) == result["max_logit_code_diff"]
    assert float((network.predict(test_x) == calibration.predict(test_x)).float().mean()) * 100 == \
        pytest.approx(result["integer_agreement"])


def test_the_rtl_backend_gives_golden_logits(calibration, tmp_path):
    network = pyioso.load(calibration.export(tmp_path / "artifact"))
    x, _ = labelled_images(FASHION, "test", SIZE, 1, seed=2)
    assert torch.equal(network.run(x, backend="rtl"), network.run(x))


@pytest.mark.parametrize("levels, codes", [("ternary", {-1, 0, 1}), ("binary", {-1, 1})])
def test_ternary_and_binary_weights_run_on_the_engine(trained, tmp_path, levels, codes):
    """TWN's and XNOR-Net's codes are 2-bit codes: the middle layers export with them (the 8-bit
    stem and head stay uniform), golden runs the artifact and the RTL equals golden."""
    model, x = trained
    calibration = pyioso.quantize(model, x[:256], wbits=2, abits=4, method="brecq", iters=20, act_iters=10,
                                  progress=False, weight_levels=levels)
    network = pyioso.load(calibration.export(tmp_path / "artifact"))
    convs = {step.name: step.op for step in network.net.steps if hasattr(step.op, "weight")}
    assert {int(c) for name in ("conv1", "conv2") for c in convs[name].weight.unique()} == codes
    assert len({int(c) for c in convs["head"].weight.unique()}) > 3
    test_x, _ = labelled_images(FASHION, "test", SIZE, 1, seed=2)
    assert torch.equal(network.run(test_x, backend="rtl"), network.run(test_x))


def test_finetune_from_python_improves_training_fit_and_still_exports(trained, tmp_path):
    model, x = trained
    calibration = pyioso.quantize(model, x[:256], wbits=2, abits=4, method="brecq", iters=20, act_iters=10,
                                  progress=False)
    _, y = labelled_images(FASHION, "train", SIZE, 2048, seed=0)
    epochs = calibration.finetune(x[:1024], y[:1024], epochs=2, lr=1e-3)
    assert len(epochs) == 2 and epochs[1]["loss"] < epochs[0]["loss"]
    test_x, test_y = labelled_images(FASHION, "test", SIZE, 200, seed=1)
    assert calibration.evaluate(test_x, test_y)["integer_agreement"] >= 95
    assert pyioso.load(calibration.export(tmp_path / "artifact")).run(test_x[:4]).shape == (4, 10)
    with pytest.raises(PyiosoError, match="labels must be a tensor of 1024"):
        calibration.finetune(x[:1024], y[:10])


def test_mixed_precision_layers_run_on_the_engine(trained, tmp_path):
    """A 2.5-bit weight budget over the two middle layers: one at 2 bits, one at 3; a 3.5-bit
    activation budget over the middle tensors: more than one width. The artifact holds the
    widths and the RTL equals golden."""
    model, x = trained
    calibration = pyioso.quantize(model, x[:256], wbits=3, abits=4, method="brecq", iters=20, act_iters=10,
                                  progress=False, mixed_budget=2.5, mixed_act_budget=3.5)
    assert sorted(b for _, b in calibration.config.layer_w_bits) == [2, 3]
    act_bits = dict(calibration.config.layer_a_bits)
    assert len(set(act_bits.values())) > 1
    network = pyioso.load(calibration.export(tmp_path / "artifact"))
    widths = {step.name: step.op.w_bits for step in network.net.steps if hasattr(step.op, "w_bits")}
    assert sorted([widths["conv1"], widths["conv2"]]) == [2, 3] and widths["head"] == 8
    codes = {step.name: step.op.requant.bits for step in network.net.steps if hasattr(step.op, "requant")}
    assert {name: codes[name] for name in act_bits} == act_bits
    test_x, _ = labelled_images(FASHION, "test", SIZE, 1, seed=2)
    assert torch.equal(network.run(test_x, backend="rtl"), network.run(test_x))


def test_onnx_round_trip_under_onnxruntime(calibration, tmp_path):
    """A standard QDQ model: onnx's checker passes it, onnxruntime runs it, and its classes are
    the fake-quant network's."""
    import onnx

    from pyioso.calib import onnx_export

    path = calibration.export_onnx(tmp_path / "small.onnx")
    model = onnx.load(path)
    kinds = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Add", "MaxPool", "AveragePool"} <= kinds
    assert {i.data_type for i in model.graph.initializer if "weight" in i.name} == {onnx.TensorProto.INT8}
    x, _ = labelled_images(FASHION, "test", SIZE, 500, seed=1)
    ort = onnx_export.run(path, x)
    assert float((ort.argmax(1) == calibration.predict(x)).float().mean()) >= 0.99
    with pytest.raises(PyiosoError, match="ending in .onnx"):
        calibration.export_onnx(tmp_path / "small.pb")


def test_bad_input_is_refused_before_any_work(trained, calibration, tmp_path):
    model, x = trained

    class WithSigmoid(SmallResNet):
        def forward(self, x):
            return torch.sigmoid(super().forward(x))

    with pytest.raises(PyiosoError, match="sigmoid"):
        pyioso.quantize(WithSigmoid().eval(), x[:64], progress=False)
    with pytest.raises(PyiosoError, match="float tensor"):
        pyioso.quantize(model, x[0], progress=False)
    with pytest.raises(PyiosoError, match="wbits 9"):
        pyioso.quantize(model, x[:64], wbits=9)
    with pytest.raises(PyiosoError, match="backend 'fpga': use golden, rtl"):
        pyioso.load(calibration.export(tmp_path / "a")).run(x[:1], backend="fpga")
    weights_only = pyioso.quantize(model, x[:64], abits=None, method="rtn", progress=False)
    with pytest.raises(PyiosoError, match="not an integer network"):
        weights_only.export(tmp_path / "b")
    assert not (tmp_path / "b").exists()
