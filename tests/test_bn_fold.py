"""BatchNorm folding against the unfused modules in eval mode (float64)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from golden.errors import PyiosoError
from pyioso.quant.bn import fold_bn, fold_conv_bn, fold_linear_bn, fused_conv_bn

F64 = torch.float64


def with_statistics(bn: nn.modules.batchnorm._BatchNorm, seed: int):
    gen = torch.Generator().manual_seed(seed)
    n = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(n, generator=gen, dtype=F64))
        bn.running_var.copy_(torch.rand(n, generator=gen, dtype=F64) * 2 + 0.05)
        if bn.affine:
            bn.weight.copy_(torch.randn(n, generator=gen, dtype=F64))
            bn.bias.copy_(torch.randn(n, generator=gen, dtype=F64))
    return bn.eval()


@pytest.mark.parametrize("groups, bias, affine", [
    (1, True, True), (1, False, True), (2, True, False), (2, False, True), (8, False, True),
    (8, True, False)])
def test_conv_bn(groups, bias, affine):
    torch.manual_seed(groups)
    conv = nn.Conv2d(8, 8, 3, stride=2, padding=1, dilation=1, groups=groups, bias=bias,
                     dtype=F64).eval()
    bn = with_statistics(nn.BatchNorm2d(8, eps=1e-3, affine=affine, dtype=F64), seed=groups)
    x = torch.randn(2, 8, 9, 9, dtype=F64)
    want = bn(conv(x))
    weight, folded_bias = fold_conv_bn(conv, bn)
    got = F.conv2d(x, weight, folded_bias, conv.stride, conv.padding, conv.dilation, groups)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    fused = fused_conv_bn(conv, bn)
    assert isinstance(fused, nn.Conv2d) and fused.groups == groups
    assert torch.allclose(fused(x), want, rtol=1e-12, atol=1e-12)


def test_linear_bn():
    torch.manual_seed(0)
    linear = nn.Linear(5, 7, dtype=F64)
    bn = with_statistics(nn.BatchNorm1d(7, dtype=F64), seed=1)
    x = torch.randn(4, 5, dtype=F64)
    weight, bias = fold_linear_bn(linear, bn)
    assert torch.allclose(F.linear(x, weight, bias), bn(linear(x)), rtol=1e-12, atol=1e-12)


def test_fold_bn_formula():
    bn = nn.BatchNorm1d(2, eps=0.0, dtype=F64)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([1.0, -2.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25]))
        bn.weight.copy_(torch.tensor([3.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.5, 0.0]))
    weight, bias = fold_bn(torch.ones(2, 3, dtype=F64), torch.tensor([1.0, 0.0], dtype=F64), bn)
    assert weight.tolist() == [[1.5] * 3, [2.0] * 3]          # gamma / sqrt(var + eps)
    assert bias.tolist() == [0.5, 4.0]                         # a * (b - mean) + beta


def test_folding_leaves_the_modules_alone():
    conv = nn.Conv2d(3, 4, 1, bias=False, dtype=F64)
    bn = with_statistics(nn.BatchNorm2d(4, dtype=F64), seed=2)
    before = conv.weight.detach().clone()
    fused = fused_conv_bn(conv, bn)
    assert torch.equal(conv.weight, before) and conv.bias is None and fused.bias is not None
    assert not fused.weight.grad_fn and not fold_conv_bn(conv, bn)[0].requires_grad


def test_bad_folds():
    conv = nn.Conv2d(3, 4, 1)
    with pytest.raises(PyiosoError, match="BatchNorm has 5 features but the layer has 4"):
        fold_conv_bn(conv, nn.BatchNorm2d(5))
    with pytest.raises(PyiosoError, match="cannot fold BatchNorm1d into Conv2d"):
        fold_conv_bn(conv, nn.BatchNorm1d(4))
    with pytest.raises(PyiosoError, match="cannot fold BatchNorm1d into Conv2d"):
        fold_linear_bn(conv, nn.BatchNorm1d(4))
    with pytest.raises(PyiosoError, match="without running statistics"):
        fold_conv_bn(conv, nn.BatchNorm2d(4, track_running_stats=False))
