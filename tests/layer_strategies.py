"""Hypothesis strategies for random layers that respect ARCHITECTURE §1-§4."""

import torch
from hypothesis import strategies as st

import golden
from golden.meaning import FloatConv

ACTIVATIONS = ("none", "relu", "relu6")


@st.composite
def conv_shapes(draw, max_c=20):
    """(N, H, W, C_in, C_out, kernel, stride, padding, dilation, groups) that convolve."""
    kind = draw(st.sampled_from(["dense", "dense", "depthwise", "grouped"]))
    if kind == "dense":
        groups, c_in, c_out = 1, draw(st.integers(1, max_c)), draw(st.integers(1, 12))
    elif kind == "depthwise":
        groups = c_in = c_out = draw(st.integers(2, 12))
    else:
        groups = draw(st.integers(2, 4))
        c_in, c_out = groups * draw(st.integers(1, 4)), groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 7))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 7))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    n = draw(st.integers(1, 2))
    return n, h, w, c_in, c_out, (kh, kw), stride, (ph, pw), (dh, dw), groups


@st.composite
def isg_codes(draw, c_in, dense):
    """Per-channel codes: contiguous groups for dense layers, anything for grouped ones."""
    if not dense:
        return torch.tensor(draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=c_in, max_size=c_in)))
    cuts = sorted(draw(st.lists(st.integers(0, c_in), min_size=2, max_size=2)))
    sizes = [cuts[0], cuts[1] - cuts[0], c_in - cuts[1]]
    return golden.channel_codes(sizes, draw(st.permutations([0, -1, 1])))


def _codes(draw, bits, shape):
    return torch.tensor(draw(st.lists(st.integers(0, 2 ** bits - 1), min_size=shape.numel(),
                                      max_size=shape.numel()))).reshape(shape)


@st.composite
def float_convs(draw, max_c=20):
    """(input codes, FloatConv): a random real layer with ISG, BN, OSO and an activation."""
    n, h, w, c_in, c_out, kernel, stride, padding, dilation, groups = draw(conv_shapes(max_c))
    a, b, a_out = draw(st.integers(2, 8)), draw(st.integers(2, 8)), draw(st.integers(2, 8))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    gen = torch.Generator().manual_seed(seed)
    lo_w, hi_w = -2 ** (b - 1), 2 ** (b - 1)
    weight = torch.randint(lo_w, hi_w, (c_out, *kernel, c_in // groups), generator=gen)
    x = torch.randint(0, 2 ** a, (n, h, w, c_in), generator=gen)
    unit = lambda: torch.rand(c_out, generator=gen, dtype=torch.float64)  # noqa: E731
    shift = draw(st.integers(0, 8))
    fc = FloatConv(
        weight=weight, w_scale=0.01 + 0.1 * unit(), w_bits=b,
        in_scale=draw(st.floats(0.01, 1.0)), in_zero_point=draw(st.integers(0, 2 ** a - 1)),
        in_bits=a, out_scale=draw(st.floats(0.05, 4.0)),
        out_zero_point=draw(st.integers(0, 2 ** a_out - 1)), out_bits=a_out,
        bias=unit() * 4 - 2, isg_shift=shift,
        isg_codes=draw(isg_codes(c_in, groups == 1)) if shift else None,
        bn_scale=0.5 + unit(), oso_scale=0.8 + 0.4 * unit(), oso_offset=unit() - 0.5,
        activation=draw(st.sampled_from(ACTIVATIONS)), stride=stride, padding=padding,
        dilation=dilation, groups=groups)
    return x, fc
