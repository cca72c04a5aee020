"""Ternary (TWN), TTQ and binary (XNOR-Net) weights: the papers' codes and scales, kept fixed by
the calibration (TTQ's learned in finetune), refused where they cannot be stored."""

import pytest
import torch

from golden.errors import PyiosoError
from pyioso.calib import calibrate
from pyioso.calib.qnet import QConv, WeightFormat
from pyioso.quant import levels


def _weight() -> torch.Tensor:
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    w[3] = 0.0                      # a dead channel: codes 0 (ternary), a tiny positive scale
    return w


def test_ternary_is_twn():
    w = _weight()
    rounding, alpha = levels.fixed_rounding("ternary", w)
    for c in range(3):
        mag = w[c].abs()
        delta = 0.7 * mag.mean()
        kept = mag > delta
        assert torch.allclose(alpha[c], mag[kept].mean())
        assert torch.equal(rounding.codes()[c], torch.sign(w[c]) * kept)
    assert torch.equal(rounding.codes()[3], torch.zeros_like(w[3])) and alpha[3] > 0
    assert torch.allclose(rounding(), rounding.codes() * alpha[:, None, None, None])


def test_ttq_starts_as_twn_and_learns_with_ttqs_gradients():
    w = _weight()
    ternary, alpha = levels.fixed_rounding("ternary", w)
    ttq, ttq_alpha = levels.fixed_rounding("ttq", w)
    assert torch.equal(ttq_alpha, alpha) and torch.equal(ttq.codes(), ternary.codes())
    assert torch.allclose(ttq(), ternary())                 # W_p = W_n = alpha at the start
    for t in (ttq.weight, ttq.scale, ttq.negative):
        t.requires_grad_(True)
    grad = torch.randn_like(w)
    ttq().backward(grad)
    codes = ttq.codes()
    assert torch.allclose(ttq.scale.grad.flatten(), (grad * (codes > 0)).flatten(1).sum(1))
    assert torch.allclose(ttq.negative.grad.flatten(), -(grad * (codes < 0)).flatten(1).sum(1))
    factor = torch.where(codes > 0, ttq.scale, torch.where(codes < 0, ttq.negative, torch.ones_like(w)))
    assert torch.allclose(ttq.weight.grad, grad * factor.detach())
    with torch.no_grad():                                   # the two scales part: no longer code x one scale
        ttq.negative.mul_(2)
    value = ttq()
    assert torch.allclose(value[codes < 0], -2 * (alpha[:, None, None, None] * torch.ones_like(w))[codes < 0])
    assert torch.allclose(value[codes > 0], (alpha[:, None, None, None] * torch.ones_like(w))[codes > 0])


def test_binary_is_xnor_net():
    w = _weight()
    rounding, alpha = levels.fixed_rounding("binary", w)
    assert torch.allclose(alpha[:3], w[:3].abs().flatten(1).mean(1))
    assert set(rounding.codes().unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(rounding.codes()[:3], torch.where(w[:3] >= 0, 1.0, -1.0))


def test_fixed_levels_are_not_learned_and_need_two_bit_symmetric_weights():
    w = _weight()
    act = type("Act", (), {})()
    conv = QConv(w, torch.zeros(4), dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1), 2,
                 act, "relu", WeightFormat(levels="ternary"))
    assert not conv.learns_rounding and isinstance(conv.rounding, levels.TernaryRounding)
    with pytest.raises(PyiosoError, match="use w_bits 2 and the symmetric grid"):
        calibrate.Config(w_bits=4, weight_levels="binary")
    with pytest.raises(PyiosoError, match="use w_bits 2 and the symmetric grid"):
        calibrate.Config(w_bits=2, weight_levels="ternary", weight_grid="asymmetric")
    with pytest.raises(PyiosoError, match="weight_levels 'quaternary'"):
        calibrate.Config(w_bits=2, weight_levels="quaternary")


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_kmeans_is_lloyds_fixed_point_with_nearest_centroids(bits):
    w = _weight()[:3]
    rounding, _ = levels.fixed_rounding("kmeans", w, bits)
    book, index = rounding.codebook, rounding.index
    assert len(book) == 2 ** bits and bool((book[1:] > book[:-1]).all())
    nearest = (w[..., None] - book).abs().argmin(-1)
    assert torch.equal(index, nearest)
    for k in range(len(book)):          # every used centroid is the mean of its weights
        if (index == k).any():
            assert torch.allclose(book[k], w[index == k].mean(), atol=1e-6)
    assert torch.equal(rounding(), book[index]) and torch.equal(rounding.codes(), index.float())
    assert levels.kmeans_codebook(w, bits)[0].tolist() == book.tolist()       # deterministic


def test_kmeans_weights_are_fake_quant_only():
    from pyioso.calib import export, qnet, workflow
    from pyioso.data.datasets import calibration_images
    from tests.test_calibrate import _model

    images = calibration_images(16, 16, 0)
    config = calibrate.Config(w_bits=3, a_bits=4, weight_levels="kmeans")
    assert not workflow.exportable(config)
    net = qnet.build(_model(), images[:16], 3, 4, weights=qnet.WeightFormat(levels="kmeans"))
    net.set_quant(True, True)
    assert any(m.levels == "kmeans" for m in net.ops.values() if isinstance(m, QConv))
    with pytest.raises(PyiosoError, match="--weight-levels kmeans"):
        export.integer_network(net)
