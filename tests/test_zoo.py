"""Layer enumeration: shapes, counts and kinds against torchvision, aliases, errors, tv import."""

import subprocess
import sys

import pytest
import torch

from golden.errors import PyiosoError
from pyioso.models import tv, zoo

# Conv2d + Linear modules per network (cross-checked against a module count below).
EXPECTED_COUNTS = {
    "resnet18": 21, "resnet50": 54, "mobilenet_v2": 53, "regnet_x_600mf": 54,
    "regnet_x_3_2gf": 81, "mnasnet1_0": 53, "mnasnet2_0": 53,
}


def test_supported_networks():
    assert set(zoo.networks()) == set(EXPECTED_COUNTS)


@pytest.mark.parametrize("net", sorted(EXPECTED_COUNTS))
def test_layer_count_matches_torchvision_modules(net):
    with torch.device("meta"):
        model = tv.build_model(net)
    modules = [name for name, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    layers = zoo.layers(net)
    assert len(layers) == len(modules) == EXPECTED_COUNTS[net]
    assert sorted(layer.path for layer in layers) == sorted(modules)
    assert layers[-1].kind == "fc" and layers[-1].c_out == 1000
    assert sum(layer.kind == "fc" for layer in layers) == 1


def test_resnet18_shapes_in_execution_order():
    layers = zoo.layers("resnet18")
    stem = layers[0]
    assert (stem.path, stem.h_in, stem.c_in, stem.c_out, stem.kernel, stem.stride, stem.padding) == (
        "conv1", 224, 3, 64, (7, 7), (2, 2), (3, 3))
    assert (stem.h_out, stem.w_out) == (112, 112)
    assert [layer.path for layer in layers[5:8]] == ["layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample.0"]
    down = layers[7]
    assert (down.h_in, down.c_in, down.c_out, down.kernel, down.stride, down.h_out) == (56, 64, 128, (1, 1), (2, 2), 28)
    assert sum(layer.kind == "conv" for layer in layers) == 20
    fc = layers[-1]
    assert (fc.path, fc.c_in, fc.h_in, fc.w_in, fc.h_out, fc.w_out, fc.kernel) == ("fc", 512, 1, 1, 1, 1, (1, 1))


@pytest.mark.parametrize("alias, hw, channels", [
    ("resnet50_l1", 56, 64), ("resnet50_l2", 28, 128), ("resnet50_l3", 14, 256), ("resnet50_l4", 7, 512),
    ("resnet18_l1", 56, 64), ("resnet18_l2", 28, 128), ("resnet18_l3", 14, 256), ("resnet18_l4", 7, 512),
])
def test_alias_shapes(alias, hw, channels):
    net, layer = zoo.resolve_layer(alias)
    assert net == alias.split("_")[0]
    assert (layer.h_in, layer.w_in, layer.c_in) == (hw, hw, channels)
    assert (layer.h_out, layer.w_out, layer.c_out) == (hw, hw, channels)
    assert (layer.kernel, layer.stride, layer.padding, layer.dilation, layer.groups) == ((3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert layer.kind == "conv"


def test_alias_paths():
    assert zoo.aliases()["resnet50_l2"] == ("resnet50", "layer2.1.conv2")
    assert zoo.aliases()["resnet18_l3"] == ("resnet18", "layer3.1.conv1")
    assert len(zoo.aliases()) == 8


def test_net_colon_path_form():
    net, layer = zoo.resolve_layer("resnet18:layer1.0.conv1")
    assert net == "resnet18" and layer == zoo.layers("resnet18")[1]
    assert zoo.resolve_layer("ResNet50:layer2.1.conv2") == zoo.resolve_layer("resnet50_l2")


def test_size_changes_shapes():
    _, layer = zoo.resolve_layer("resnet50_l3", size=448)
    assert (layer.h_in, layer.c_in) == (28, 256)


def test_mobilenet_v2_depthwise():
    layers = zoo.layers("mobilenet_v2")
    depthwise = [layer for layer in layers if layer.kind == "depthwise"]
    assert len(depthwise) == 17
    assert all(layer.groups == layer.c_in == layer.c_out and layer.c_in_per_group == 1 for layer in depthwise)
    first = layers[1]
    assert (first.kind, first.c_in, first.h_out, first.kernel) == ("depthwise", 32, 112, (3, 3))


def test_regnet_grouped_convs_are_not_depthwise():
    layers = zoo.layers("regnet_x_600mf")
    grouped = [layer for layer in layers if layer.groups > 1]
    assert grouped and all(layer.kind == "conv" and layer.c_in_per_group == 24 for layer in grouped)
    # pycls RegNetX-600MF stage widths.
    assert sorted({layer.c_out for layer in layers if layer.kind == "conv"}) == [32, 48, 96, 240, 528]


def test_cache_returns_same_object():
    assert zoo.layers("resnet18") is zoo.layers("resnet18")


@pytest.mark.parametrize("call, fragment", [
    (lambda: zoo.layers("vgg16"), "resnet18, resnet50"),
    (lambda: zoo.layers("resnet18", size=0), "--size"),
    (lambda: zoo.resolve_layer("resnet50_l9"), "resnet50_l3"),
    (lambda: zoo.resolve_layer("resnet18:layer9.0.conv1"), "pyioso layers --net resnet18"),
    (lambda: zoo.resolve_layer("nonet:conv1"), "unknown network"),
    (lambda: tv.build_model("resnet18", num_classes=0), "num_classes"),
])
def test_bad_input_raises_pyioso_error(call, fragment):
    with pytest.raises(PyiosoError, match=fragment):
        call()


def test_build_model_seeded_and_rng_untouched():
    state = torch.get_rng_state()
    a = tv.build_model("resnet18", num_classes=10, seed=3)
    b = tv.build_model("resnet18", num_classes=10, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.fc.out_features == 10
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = tv.build_model("resnet18", num_classes=10, seed=4)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_torchvision_is_idempotent():
    assert tv.torchvision() is tv.torchvision() is sys.modules["torchvision"]


def test_torchvision_already_imported_elsewhere():
    """Someone else defined the schemas and imported torchvision first: tv must just reuse it."""
    code = (
        "import torch\n"
        "lib = torch.library.Library('torchvision', 'DEF')\n"
        "lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')\n"
        "lib.define('qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor')\n"
        "import torchvision\n"
        "from pyioso.models import tv\n"
        "assert tv.torchvision() is torchvision\n"
        "print(tv.build_model('mnasnet2_0').classifier[1].in_features)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1280"


def test_plain_torchvision_import_works_in_the_venv():
    """Issue 25: `import torchvision` failed ("operator torchvision::nms does not exist") unless
    pyioso.models.tv was imported first; the venv's startup hook defines the schemas."""
    done = subprocess.run([sys.executable, "-c", "import torchvision; print(torchvision.models.resnet18().fc)"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    assert "Linear(in_features=512" in done.stdout
