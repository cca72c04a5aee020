"""Rounding policies: round-to-nearest and AdaRound (init, regularizer, beta schedule, learning)."""

import pytest
import torch

from golden.errors import PyiosoError
from pyioso.quant import rounding
from pyioso.quant.observers import MinMaxObserver
from pyioso.quant.rounding import GAMMA, ZETA, AdaRound, BetaSchedule, NearestRounding
from pyioso.quant.uniform import fake_quantize, quantize
from tests.test_observers import single_thread  # noqa: F401  (autouse fixture)

F64 = torch.float64


def per_channel_weight(seed=0, shape=(6, 4, 3, 3), bits=3):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    observer = MinMaxObserver(ch_axis=0)
    observer(w)
    scale, zp = observer.calculate_qparams(bits, signed=True)
    return w, scale, zp


def test_v_starts_at_the_fractional_part():
    w, scale, zp = per_channel_weight()
    ada = AdaRound(w, scale, zp, 3, True, ch_axis=0)
    scaled = w / scale.view(-1, 1, 1, 1)
    assert torch.allclose(ada.h(), scaled - torch.floor(scaled), rtol=0, atol=1e-12)
    assert torch.allclose(ada(), w, rtol=0, atol=1e-12)      # MinMax: every weight on the grid


def test_hard_rounding_at_init_is_round_to_nearest():
    w, scale, zp = per_channel_weight(seed=1)
    ada = AdaRound(w, scale, zp, 3, True, ch_axis=0)
    nearest = NearestRounding(w, scale, zp, 3, True, ch_axis=0)
    frac = ada.h()
    away_from_ties = (frac - 0.5).abs() > 1e-9
    assert torch.equal(ada.codes()[away_from_ties], nearest.codes()[away_from_ties])
    ada.soft = False
    assert torch.equal(ada(), (ada.codes() - 0) * scale.view(-1, 1, 1, 1))


def test_codes_round_up_or_down_and_stay_on_the_grid():
    w, scale, zp = per_channel_weight(seed=2, bits=2)
    w = w * 1.5                                                # some weights beyond the grid
    ada = AdaRound(w, scale, zp, 2, True, ch_axis=0)
    with torch.no_grad():
        ada.v.copy_(torch.randn(ada.v.shape, generator=torch.Generator().manual_seed(9)) * 5)
    floor = torch.floor(w / scale.view(-1, 1, 1, 1))
    codes = ada.codes()
    assert torch.all((codes >= -2) & (codes <= 1))
    assert torch.equal(codes, torch.clamp(floor + (ada.h() >= 0.5).to(F64), -2, 1))
    soft = ada() / scale.view(-1, 1, 1, 1)
    assert torch.all((soft >= -2) & (soft <= 1))
    assert torch.all((soft >= torch.clamp(floor, -2, 1)) & (soft <= torch.clamp(floor + 1, -2, 1)))


def test_unsigned_grid_with_zero_point():
    w = torch.tensor([-0.7, 0.05, 0.61, 1.3, 5.0], dtype=F64)
    ada = AdaRound(w, 0.4, 2, 3, False)                 # codes 0..7, z = 2: grid [-0.8, 2.0]
    assert ada.codes().tolist() == quantize(w, 0.4, 2, 0, 7).tolist()
    assert torch.allclose(ada()[:4], w[:4], atol=1e-12) and ada()[4].item() == pytest.approx(2.0)


def test_regularizer_formula():
    w = torch.zeros(4, dtype=F64)
    ada = AdaRound(w, 1.0, 0, 4, True)
    target = torch.tensor([0.0, 1.0, 0.5, 0.75], dtype=F64)
    with torch.no_grad():
        ada.v.copy_(torch.logit((target - GAMMA) / (ZETA - GAMMA)).reshape(ada.v.shape))
        ada.v[0], ada.v[1] = -20.0, 20.0                       # saturate the rectified sigmoid
    assert torch.allclose(ada.h(), target, atol=1e-12)
    assert ada.regularizer(2.0).item() == pytest.approx(0 + 0 + 1 + (1 - 0.5 ** 2))
    assert ada.regularizer(20.0).item() == pytest.approx(1 + (1 - 0.5 ** 20))


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "eager"])
@pytest.mark.parametrize("beta", [0.0, 2.0, 13.7])
@pytest.mark.parametrize("shape", [(6, 4, 3, 3), (5, 7)], ids=["conv", "linear"])
def test_fused_soft_weight_equals_composed_autograd(compiled, beta, shape, monkeypatch):
    """The fused kernels (forward and backward) against the same formulas under autograd, with
    weights beyond the grid, saturated h(V) and h(V) = 1/2 (d = 0) included."""
    monkeypatch.setenv("PYIOSO_COMPILE", "1" if compiled else "0")
    rounding.build_kernels.cache_clear()
    w, scale, zp = per_channel_weight(seed=3, shape=shape, bits=3)
    ada = AdaRound(w * 1.3, scale, zp, 3, True, ch_axis=0)
    with torch.no_grad():
        ada.v.copy_(torch.randn(ada.v.shape, generator=torch.Generator().manual_seed(4), dtype=F64) * 3)
        ada.v[0, :3] = torch.tensor([-30.0, 30.0, torch.logit(torch.tensor(0.6 / 1.2)).item()])
    grad_w = torch.randn(shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    weight, reg = ada.soft_weight(beta)
    ((weight * grad_w).sum() + 0.01 * reg).backward()
    fused_grad, ada.v.grad = ada.v.grad, None
    composed = ada()                                   # soft: dequantize(clamp(floor + h(V)))
    composed_reg = ada.regularizer(beta) if beta else torch.zeros((), dtype=F64)
    ((composed * grad_w).sum() + 0.01 * composed_reg).backward()
    rounding.build_kernels.cache_clear()
    assert torch.allclose(weight, composed, rtol=0, atol=1e-12)
    assert float(reg.detach()) == pytest.approx(float(composed_reg.detach()), abs=1e-9)
    assert torch.allclose(fused_grad, ada.v.grad, rtol=1e-9, atol=1e-12)


def test_focused_taps_learn_as_the_whole_kernel_does():
    """Focused on the taps an input reaches, AdaRound gives those taps' soft weight, regularizer
    terms and V gradient exactly as the whole kernel's, cropped; h() and the codes read the
    focused V, and unfocus() writes it back."""
    w, scale, zp = per_channel_weight(seed=6, shape=(6, 4, 3, 3), bits=3)
    taps = (slice(1, 3), slice(1, 2))
    grad_w = torch.randn(6, 4, 2, 1, generator=torch.Generator().manual_seed(7), dtype=F64)
    whole = AdaRound(w, scale, zp, 3, True, ch_axis=0)
    weight, _ = whole.soft_weight(5.0, taps)
    (weight * grad_w).sum().backward()
    focused = AdaRound(w, scale, zp, 3, True, ch_axis=0)
    live = focused.focus(taps)
    columns = torch.arange(36).view(3, 3, 4)[1:3, 1:2].reshape(-1)
    assert live.shape == (6, 8) and torch.equal(live, focused.v[:, columns])
    live_weight, live_reg = focused.soft_weight(5.0, taps)
    (live_weight * grad_w).sum().backward()
    assert torch.equal(live_weight, weight) and torch.equal(live.grad, whole.v.grad[:, columns])
    assert focused.v.grad is None
    assert float(live_reg.detach()) == pytest.approx(float(rounding._regularizer(whole.h()[:, :, 1:3, 1:2].detach(), 5.0)))
    with torch.no_grad():
        live.fill_(30.0)                                    # every focused tap rounds up
    assert torch.all(focused.h()[:, :, 1:3, 1:2] == 1)
    with pytest.raises(PyiosoError, match="input's size changed"):
        focused.soft_weight(5.0, (slice(0, 3), slice(0, 3)))
    live.requires_grad_(False)                              # learned: the reconstruction freezes it
    focused.unfocus()
    assert torch.all(focused.v[:, columns] == 30.0) and not focused.v.requires_grad
    assert focused.focus((slice(0, 3), slice(0, 3))) is focused.v


def test_the_hard_weight_is_kept_until_v_changes():
    w, scale, zp = per_channel_weight(seed=8)
    ada = AdaRound(w, scale, zp, 3, True, ch_axis=0)
    ada.soft = False
    ada.v.grad = torch.full_like(ada.v, -1.0)               # learning: every step raises V
    torch.optim.Adam([ada.v], lr=100.0, fused=True).step()  # a fused step leaves V's version as it was
    assert torch.all(ada.h() == 1) and torch.equal(ada(), ada._code(torch.ones_like(ada.h())) * scale.view(-1, 1, 1, 1))
    ada.v.requires_grad_(False)                             # frozen: the hard weight is kept
    first = ada()
    assert ada() is first and torch.equal(first, (ada.codes() - zp.view(-1, 1, 1, 1)) * scale.view(-1, 1, 1, 1))
    with torch.no_grad():
        ada.v.fill_(-30.0)                                  # every weight rounds down
    assert torch.equal(ada(), torch.clamp(torch.floor(w / scale.view(-1, 1, 1, 1)), -4, 3) * scale.view(-1, 1, 1, 1))


def test_kernels_run_eagerly_when_compilation_fails(monkeypatch, caplog):
    def no_compiler(fn, **_):
        def fails(*args):
            raise RuntimeError("no C++ compiler")
        return fails

    monkeypatch.setattr(torch, "compile", no_compiler)
    rounding.build_kernels.cache_clear()
    try:
        kernels = rounding.build_kernels()
    finally:
        rounding.build_kernels.cache_clear()
    assert kernels["weight"] is rounding._weight_only
    assert "torch.compile is unavailable on cpu (RuntimeError: no C++ compiler)" in caplog.text


def test_no_regularization_during_warm_up():
    w, scale, zp = per_channel_weight()
    ada = AdaRound(w, scale, zp, 3, True, ch_axis=0)
    reg = ada.regularizer(BetaSchedule(100)(0))
    reg.backward()
    assert reg.item() == 0 and torch.equal(ada.v.grad, torch.zeros_like(ada.v))


def test_beta_schedule():
    schedule = BetaSchedule(100)                               # warm-up 0.2, 20 -> 2
    assert [schedule(t) for t in (0, 19)] == [0.0, 0.0]
    assert schedule(20) == 20.0 and schedule(60) == pytest.approx(11.0)
    assert schedule(100) == 2.0 and schedule(150) == 2.0
    betas = [schedule(t) for t in range(20, 101)]
    assert all(a > b for a, b in zip(betas, betas[1:]))
    assert BetaSchedule(10, warmup=0.0, start=8, end=4)(0) == 8


def test_adaround_beats_nearest_on_layer_reconstruction():
    """AdaRound's objective: ||W X - W~ X||^2 + lambda * f_reg, then hard rounding.

    The inputs are correlated (rank 4 plus noise): with white inputs the loss is ||W - W~||^2
    and rounding to nearest is already optimal."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=gen, dtype=F64) @ torch.randn(4, 16, generator=gen,
                                                                      dtype=F64)
    x = x + 0.1 * torch.randn(256, 16, generator=gen, dtype=F64)
    w, scale, zp = per_channel_weight(seed=3, shape=(8, 16), bits=3)
    target = x @ w.T
    nearest = NearestRounding(w, scale, zp, 3, True, ch_axis=0)
    nearest_err = (x @ nearest().T - target).pow(2).mean()
    ada = AdaRound(w, scale, zp, 3, True, ch_axis=0)
    iters = 400
    schedule = BetaSchedule(iters)
    optimizer = torch.optim.Adam([ada.v], lr=0.05)
    for t in range(iters):
        optimizer.zero_grad()
        loss = (x @ ada().T - target).pow(2).mean() + ada.regularizer(schedule(t))
        loss.backward()
        optimizer.step()
    assert torch.all((ada.h() == 0) | (ada.h() == 1))          # the regularizer made h binary
    soft_err = (x @ ada().T - target).pow(2).mean()
    ada.soft = False
    hard_err = (x @ ada().T - target).pow(2).mean()
    assert hard_err == soft_err and hard_err < 0.5 * nearest_err


def test_nearest_is_the_code_convention():
    w, scale, zp = per_channel_weight(seed=4)
    nearest = NearestRounding(w, scale, zp, 3, True, ch_axis=0)
    assert torch.equal(nearest(), fake_quantize(w, scale, zp, -4, 3, ch_axis=0))
    assert not list(nearest.parameters())


def test_bad_rounding_input():
    w = torch.ones(4)
    with pytest.raises(PyiosoError, match="bits=9"):
        AdaRound(w, 0.1, 0, 9, True)
    with pytest.raises(PyiosoError, match="scale must be finite and > 0"):
        AdaRound(w, 0.0, 0, 4, True)
    with pytest.raises(PyiosoError, match=r"zero_point must be an integer in \[0, 15\]"):
        NearestRounding(w, 0.1, 16, 4, False)
    with pytest.raises(PyiosoError, match="binary grid"):
        AdaRound(w, 0.1, 0, 1, True)
    with pytest.raises(PyiosoError, match="per-channel scale needs 4 values"):
        AdaRound(w, torch.ones(3), 0, 4, True, ch_axis=0)
    for bad in (dict(iters=0), dict(iters=10, warmup=1.0), dict(iters=10, start=2, end=20),
                dict(iters=10, end=0)):
        with pytest.raises(PyiosoError, match="BetaSchedule.* is invalid"):
            BetaSchedule(**bad)
