"""golden/ against the literal reading of the spec, the ISG identity, and the float meaning."""

import dataclasses

import torch
from hypothesis import assume, given, settings, strategies as st

import golden
from golden.errors import PyiosoError
from golden.meaning import FloatConv, add_real_code, avg_pool_real_code
from pyioso.quant.fixedpoint import add_requant, avg_pool_requant, integer_conv, rounding_slack
from tests import reference
from tests.layer_strategies import float_convs

PROPS = settings(max_examples=60, deadline=None)


@PROPS
@given(float_convs())
def test_conv_equals_literal_spec(case):
    x, fc = case
    layer = integer_conv(fc)
    assert torch.equal(golden.conv(x, layer), torch.from_numpy(reference.conv(x.numpy(), layer)))


@PROPS
@given(float_convs())
def test_conv_within_spec_error_of_float_meaning(case):
    """§3: |u - rho| <= 1/2 + (|S_c| + 2) 2^-(F+1), after the same clamp."""
    x, fc = case
    layer = integer_conv(fc)
    lo, hi = fc.clamp_bounds()
    bound = 0.5 + rounding_slack(fc, layer.requant.shift)
    err = (golden.conv(x, layer) - fc.real_code(x).clamp(lo, hi)).abs()
    assert (err <= bound + 1e-9).all()
    # and the integer layer reproduces the fake-quant codes except at near-ties
    assert (golden.conv(x, layer) - fc.output_codes(x)).abs().max() <= 1


@PROPS
@given(float_convs(), st.integers(-3, 3), st.floats(-1.0, 1.0))
def test_channels_with_inputs_at_the_zero_point_give_the_fake_quant_code(case, half, nudge):
    """§3's offset clamp: S_c = 0 gives round(b) even for b a hair from a half-integer."""
    x, fc = case
    fc = dataclasses.replace(fc, oso_scale=None, oso_offset=None)     # F depends on the scales, not on b
    try:
        shift = integer_conv(fc).requant.shift
    except PyiosoError:     # without OSO the scale ratios exceed §3's bound: a layer export refuses
        assume(False)
    b = half + 0.5 + nudge * 2.0 ** -(shift + 1)        # inside the slack of rhu(b 2^F)
    c_out = fc.weight.shape[0]
    fc = dataclasses.replace(fc, bias=torch.full((c_out,), b * fc.out_scale, dtype=torch.float64))
    dead = torch.full_like(x, fc.in_zero_point)
    assert torch.equal(golden.conv(dead, integer_conv(fc)), fc.output_codes(dead))


@PROPS
@given(float_convs(max_c=40), st.integers(0, 8))
def test_group_partial_sums_combine_to_accumulator(case, shift):
    """S = sum_p (A_p << n) + s_p A_p equals the factor-folded convolution (§2)."""
    x, fc = case
    if fc.groups != 1:
        return
    layer = integer_conv(fc)
    codes = layer.isg_codes.tolist()
    sizes, group_codes = [], []
    for c in codes:                         # recover contiguous groups from per-channel codes
        if group_codes and group_codes[-1] == c:
            sizes[-1] += 1
        else:
            sizes.append(1)
            group_codes.append(c)
    partials = golden.group_partial_sums(x, layer, sizes)
    assert torch.equal(golden.isg_combine(partials, group_codes, layer.isg_shift),
                       golden.accumulate(x, layer))


def test_no_isg_is_plain_accumulation():
    torch.manual_seed(1)
    fc = FloatConv(weight=torch.randint(-8, 8, (4, 3, 3, 5)), w_scale=torch.full((4,), 0.02),
                   w_bits=4, in_scale=0.1, in_zero_point=0, in_bits=4, out_scale=0.5,
                   out_zero_point=0, out_bits=8, bias=torch.zeros(4), padding=(1, 1))
    layer = integer_conv(fc)
    x = torch.randint(0, 16, (1, 6, 6, 5))
    plain = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2).double(),
                                       fc.weight.permute(0, 3, 1, 2).double(), padding=1)
    assert torch.equal(golden.accumulate(x, layer), plain.permute(0, 2, 3, 1).long())


def test_linear_is_a_1x1_conv():
    torch.manual_seed(2)
    fc = FloatConv(weight=torch.randint(-128, 128, (10, 1, 1, 64)), w_scale=torch.rand(10) / 50,
                   w_bits=8, in_scale=0.05, in_zero_point=0, in_bits=8, out_scale=0.2,
                   out_zero_point=128, out_bits=8, bias=torch.randn(10), isg_shift=4,
                   isg_codes=golden.channel_codes([32, 16, 16], [0, -1, 1]))
    layer = integer_conv(fc)
    x = torch.randint(0, 256, (3, 64))
    y = golden.linear(x, layer)
    assert y.shape == (3, 10)
    assert torch.equal(y, golden.conv(x[:, None, None, :], layer)[:, 0, 0, :])


@PROPS
@given(st.integers(0, 2 ** 31 - 1), st.integers(2, 8), st.booleans())
def test_residual_add(seed, bits, relu):
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randint(0, 2 ** bits, (2, 3, 4, 5), generator=gen)
    x2 = torch.randint(0, 2 ** bits, (2, 3, 4, 5), generator=gen)
    s1, s2, so = (0.01 + torch.rand(3, generator=gen, dtype=torch.float64)).tolist()
    z1, z2, zo = torch.randint(0, 2 ** bits, (3,), generator=gen).tolist()
    add = add_requant((s1, s2), (z1, z2), (bits, bits), so, zo, bits, relu)
    y = golden.residual_add(x1, x2, add)
    assert torch.equal(y, torch.from_numpy(reference.residual_add(x1.numpy(), x2.numpy(), add)))
    rho = add_real_code(x1, s1, z1, x2, s2, z2, so, zo).clamp(add.requant.lo, add.requant.hi)
    slack = (2 * 2 ** bits) * 2.0 ** -(add.requant.shift + 1)
    assert ((y - rho).abs() <= 0.5 + slack).all()


@PROPS
@given(st.integers(0, 2 ** 31 - 1), st.integers(1, 3), st.integers(1, 2), st.integers(0, 1))
def test_pools(seed, k, s, p):
    p = min(p, k // 2)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (2, 6, 5, 3), generator=gen)
    assert torch.equal(golden.max_pool(x, k, s, p),
                       torch.from_numpy(reference.max_pool(x.numpy(), (k, k), (s, s), (p, p))))
    pool = avg_pool_requant((k, k), (s, s), (p, p), 0.1, 7, 8, 0.08, 3, 8)
    y = golden.avg_pool(x, pool)
    assert torch.equal(y, torch.from_numpy(reference.avg_pool(x.numpy(), pool)))
    rho = avg_pool_real_code(x, k, s, p, 0.1, 7, 0.08, 3).clamp(0, 255)
    assert ((y - rho).abs() <= 0.5 + 255 * 2.0 ** -(pool.requant.shift + 1)).all()


def test_global_average_pool_of_a_resnet_head():
    x = torch.randint(0, 16, (4, 7, 7, 512), generator=torch.Generator().manual_seed(3))
    pool = avg_pool_requant((7, 7), (7, 7), (0, 0), 0.25, 0, 4, 0.02, 0, 8)
    y = golden.avg_pool(x, pool)
    assert y.shape == (4, 1, 1, 512)
    rho = avg_pool_real_code(x, 7, 7, 0, 0.25, 0, 0.02, 0)
    assert (y - rho.clamp(0, 255)).abs().max() <= 0.5 + 1e-3


def test_permutation_folds_into_producer_and_consumer():
    """§4: reorder producer outputs and consumer inputs together -> identical final output."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randint(0, 16, (1, 5, 5, 8), generator=gen)
    make = lambda c_in, c_out, codes: integer_conv(FloatConv(  # noqa: E731
        weight=torch.randint(-8, 8, (c_out, 3, 3, c_in), generator=gen),
        w_scale=torch.full((c_out,), 0.05), w_bits=4, in_scale=0.1, in_zero_point=2,
        in_bits=4, out_scale=0.3, out_zero_point=1, out_bits=4, bias=torch.zeros(c_out),
        isg_shift=4, isg_codes=codes, activation="relu", padding=(1, 1)))
    producer = make(8, 32, None)
    consumer = make(32, 6, golden.channel_codes([16, 16], [1, -1]))
    perm = torch.randperm(32, generator=gen)
    want = golden.conv(golden.conv(x, producer), consumer)
    got = golden.conv(golden.conv(x, producer.permute_outputs(perm)), consumer.permute_inputs(perm))
    assert torch.equal(got, want)
