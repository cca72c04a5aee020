"""The fused LSQ fake-quantization equals the chain of torch ops it replaces, bit for bit."""

import pytest
import torch
import torch.nn.functional as F

from golden.layers import activation_bounds
from pyioso.quant import lsq

FLOAT = {"none": lambda x: x, "relu": F.relu, "relu6": F.relu6}


def chained(x, s, lo, hi, activation, drop, generator):
    """LSQ and QDrop as autograd composes them from torch ops: the definition."""
    v = torch.clamp(x / s, lo, hi)
    q = (v + (torch.round(v) - v).detach()) * s
    if drop:
        keep = torch.rand(q.shape, generator=generator) < drop
        q = torch.where(keep, FLOAT[activation](x), q)
    return q


@pytest.fixture(params=["compiled", "eager"])
def kernels(request, monkeypatch):
    monkeypatch.setenv("PYIOSO_COMPILE", "1" if request.param == "compiled" else "0")
    lsq.build_kernels.cache_clear()
    yield
    lsq.build_kernels.cache_clear()


@pytest.mark.parametrize("activation", ["none", "relu", "relu6"])
@pytest.mark.parametrize("drop", [0.0, 0.5])
@pytest.mark.parametrize("shape, layout, grad_layout", [
    ((4, 16, 5, 5), torch.channels_last, torch.channels_last), ((4, 16, 5, 5), torch.channels_last, torch.contiguous_format),
    ((4, 16, 5, 5), torch.contiguous_format, torch.channels_last), ((8, 24), torch.contiguous_format, torch.contiguous_format)])
def test_values_and_gradients_are_the_chained_ops_bit_for_bit(kernels, activation, drop, shape, layout, grad_layout):
    torch.manual_seed(0)
    x0 = (torch.randn(shape) * 2).contiguous(memory_format=layout)
    grad = torch.randn(shape).contiguous(memory_format=grad_layout)
    zero_point = 3 if activation == "none" else 0
    results = []
    for fake_quantize in (chained, lsq.fake_quantize):
        x, scale = x0.clone().requires_grad_(True), torch.nn.Parameter(torch.tensor(0.137))
        lo, hi = activation_bounds(activation, 4, zero_point, float(scale.detach()))
        out = fake_quantize(x, scale.clamp_min(1e-7), lo - zero_point, hi - zero_point, activation, drop,
                            torch.Generator().manual_seed(5))
        out.backward(grad)
        results.append((out.detach(), x.grad, scale.grad))
    for name, ours, theirs in zip(("value", "dL/dx", "dL/ds"), results[1], results[0]):
        assert torch.equal(ours, theirs) and ours.stride() == theirs.stride(), name
    # the clamp and the drop both reach the test: codes at both ends, and float values kept
    codes = torch.round(results[0][0] / 0.137)
    assert (codes == lo - zero_point).any() and (codes == hi - zero_point).any()
    off_grid = ((results[0][0] / 0.137) - codes).abs() > 1e-3
    assert off_grid.any() == bool(drop)


def test_mixing_inputs_takes_the_same_draws():
    quantized, real = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    mixed = lsq.mix(quantized, real, 0.5, torch.Generator().manual_seed(1))
    keep = torch.rand(quantized.shape, generator=torch.Generator().manual_seed(1)) < 0.5
    assert torch.equal(mixed, keep.float())
