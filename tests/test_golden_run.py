"""The golden main job on a real torchvision layer: integer layer == fake-quant layer."""

import json

import pytest
import torch

import golden
from golden.errors import PyiosoError
from pyioso.cli.main import main
from pyioso.integer.layer_case import build_case
from pyioso.quant.layer import hw_group_sizes


@pytest.mark.parametrize("c_in, sizes", [(256, (128, 64, 64)), (64, (32, 16, 16)),
                                         (3, (3, 0, 0)), (40, (16, 16, 8)), (16, (16, 0, 0))])
def test_hw_group_sizes_are_valid(c_in, sizes):
    assert hw_group_sizes(c_in) == sizes
    golden.check_hw_grouping(sizes, c_in)


def test_case_matches_the_float_layer():
    case = build_case("resnet18_l4", w_bits=4, a_bits=4, batch=1)
    assert case.x.shape == (1, 7, 7, 512) and case.layer.weight.shape == (512, 3, 3, 512)
    y = golden.conv(case.x, case.layer)
    assert torch.equal(y, case.float_layer.output_codes(case.x))
    assert case.float_layer.activation == "relu"        # layer4.1.conv1 -> bn1 -> relu
    real = case.real_output.double()
    dequant = case.float_layer.out_scale * (y - case.float_layer.out_zero_point)
    sqnr = 10 * torch.log10(real.pow(2).mean() / (dequant - real).pow(2).mean())
    assert sqnr > 10


def test_cli_golden_writes_a_report(tmp_path, capsys):
    assert main(["golden", "--layer", "resnet18_l4", "--images", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "resnet18_l4" / "report.json").read_text())
    assert report["outputs"] == 7 * 7 * 512
    assert report["max_deviation_from_real_code"] <= report["spec_bound"]
    assert report["cost"]["ops"] == 25088 * (4608 + 4607)
    assert "outputs/s" in capsys.readouterr().out


def test_non_conv_layer_is_refused():
    with pytest.raises(PyiosoError, match="dense convs"):
        build_case("resnet18:fc")
