"""The integer network: golden end to end on resnet18, tracking the float network."""

import pytest
import torch
from PIL import Image
from torch import nn

import golden
from golden.errors import PyiosoError
from golden.spec import PAPER_GROUP_CODES
from pyioso.data.datasets import sample_photos
from pyioso.integer import artifact, rtn
from pyioso.integer.layer_case import hw_group_sizes
from pyioso.models import tv

SIZE = 32


@pytest.fixture(scope="module")
def images():
    return sample_photos(4, SIZE, seed=1)      # not the calibration images (seed 0)


@pytest.fixture(scope="module")
def w4a4():
    return rtn.build("resnet18", size=SIZE)


def test_resnet18_runs_in_golden_layer_by_layer(w4a4, images):
    logits, runs = w4a4.forward(w4a4.quantize_input(images), record=True)
    assert logits.shape == (4, 1000)
    assert [type(s.op).__name__ for s in w4a4.steps].count("Add") == 8
    assert [r.path for r in runs][:3] == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
    assert len(runs) == 21 and runs[-1].path == "fc" and runs[-1].x.shape == (4, 1, 1, 512)
    for run in runs:
        assert torch.equal(run.y, golden.conv(run.x, run.layer)), run.path
        assert run.layer.isg_shift == 4
        assert torch.equal(run.layer.isg_codes,
                           golden.channel_codes(hw_group_sizes(run.layer.c_in), PAPER_GROUP_CODES))
    assert torch.equal(logits, runs[-1].y[:, 0, 0, :])


def test_first_and_last_layers_are_8_bit(w4a4):
    layers = [s.op for s in w4a4.steps if isinstance(s.op, golden.Conv)]
    first, inner, last = layers[0], layers[1:-1], layers[-1]
    assert (first.w_bits, first.in_bits) == (8, 8)
    assert (last.w_bits, last.in_bits, last.requant.bits) == (8, 8, 8)
    assert {(c.w_bits, c.in_bits) for c in inner} == {(4, 4)}
    assert w4a4.codings[w4a4.input_name].bits == w4a4.codings[w4a4.output_name].bits == 8


def test_max_pool_keeps_its_input_coding(w4a4):
    pool = next(s for s in w4a4.steps if isinstance(s.op, golden.MaxPool))
    assert w4a4.codings[pool.output] == w4a4.codings[pool.inputs[0]]


def test_residual_adds_fuse_their_relu(w4a4):
    adds = [s.op for s in w4a4.steps if isinstance(s.op, golden.Add)]
    assert all(a.requant.lo == a.requant.zero_point for a in adds)


def test_w8a8_logits_track_the_float_network(images):
    model = tv.build_model("resnet18", seed=0)
    net = rtn.from_model(model, sample_photos(4, SIZE, 0), w_bits=8, a_bits=8)
    logits, _ = net.forward(net.quantize_input(images))
    with torch.no_grad():
        want = model.eval()(images).to(torch.float64)
    got = net.dequantize_logits(logits)
    corr = torch.corrcoef(torch.stack([got.flatten(), want.flatten()]))[0, 1].item()
    agree = (got.argmax(1) == want.argmax(1)).double().mean().item()
    print(f"W8A8 resnet18@{SIZE}: logit correlation {corr:.4f}, top-1 agreement {agree:.2f}")
    assert corr > 0.9
    assert agree > 1 / 1000       # untrained weights: only "better than chance" is meaningful


def test_unknown_network_is_refused():
    with pytest.raises(PyiosoError, match="unknown network"):
        rtn.build("vgg16", size=SIZE)


def test_bad_bits_are_refused():
    with pytest.raises(PyiosoError, match="w_bits=1"):
        rtn.build("resnet18", size=SIZE, w_bits=1)


class _Gated(nn.Module):
    def __init__(self, head: bool = True):
        super().__init__()
        self.conv, self.gate = nn.Conv2d(3, 8, 3), nn.Sigmoid()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 4) if head else nn.Identity()

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.gate(self.conv(x))), 1))


def test_unsupported_module_is_named():
    with pytest.raises(PyiosoError, match=r"module 'gate' \(Sigmoid\); supported: Conv2d"):
        rtn.from_model(_Gated(), sample_photos(1, 8))


def test_network_must_end_in_a_linear():
    model = _Gated(head=False)
    model.gate = nn.ReLU()
    with pytest.raises(PyiosoError, match="not a Linear classifier"):
        rtn.from_model(model, sample_photos(1, 8))


def test_artifact_runs_name_their_artifact_and_image(w4a4, tmp_path):
    """Issue 26: every resnet18 32 px artifact wrote one summary.json (one overwrote another's
    record), and the image fed was a Fashion-MNIST photo whatever the artifact's data."""
    info = {"network": {"name": "resnet18", "size": 32, "channels": 3},
            "calibration": {"data": str(tmp_path / "gone"), "config": {"w_bits": 4, "a_bits": 4}}}
    first = artifact.save(tmp_path / "a", w4a4, {}, info)
    second = artifact.save(tmp_path / "b", w4a4, {}, {**info, "calibration": {"data": "fashion-mnist"}})
    doc, runs, source = artifact.layer_runs(first)
    assert runs and "not on this machine" in source
    assert artifact.label(doc).startswith("resnet18_32px_")
    assert artifact.label(doc) != artifact.label(artifact.load(second)[1])
    folder = tmp_path / "data" / "val"                  # an ImageFolder that is present
    for k, name in enumerate(("cat", "dog")):
        (folder / name).mkdir(parents=True)
        pixels = (torch.rand(40, 40, 3) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / name / f"{k}.png")
    third = artifact.save(tmp_path / "c", w4a4, {}, {**info, "calibration": {"data": str(tmp_path / "data")}})
    assert artifact.layer_runs(third)[2].startswith(f"{tmp_path / 'data'}: one held-out image")
