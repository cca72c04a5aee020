"""The host driver without RTL: every refusal names its reason, and plan()'s passes add up to
the whole layer.

The pass decomposition is checked in pure Python, so the slicing math (rows, halo, PAD_TOP, H,
channel tiles) is validated here for small scratchpads that the RTL tests do not build; the
RTL runs only the default depths (sim/test_engine.py).
"""

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import event, given, settings, strategies as st

import golden
from golden.errors import PyiosoError
from hw import driver, geometry, mapping
from hw.host import Csr, Depths, Mode
from hw.params import EngineParams
from pyioso.integer.layer_case import random_case

ENGINE = EngineParams()


def _case(h=6, w=6, c_in=16, c_out=16, k=3, stride=1, pad=1, w_bits=4, a_bits=4, shift=4):
    return random_case(h, w, c_in, c_out, k, stride, pad, w_bits, a_bits, seed=1, isg_shift=shift)


def _refused(match, x, layer, params=ENGINE, depths=Depths()):
    with pytest.raises(PyiosoError, match=match):
        driver.plan(layer, x, params, depths)


def test_kernel_8x8():
    _refused(r"kernel 8x8 is larger than the engine's 7x7", *_case(h=8, w=8, k=8, pad=0))


def test_parts_of_a_grouped_layer():
    """RegNet's group width 24 on 16-channel tiles: each N-tile reads the input tiles that
    hold its groups' channels (2 or 3 of them); a depthwise layer reads one tile per N-tile;
    a layer whose groups are whole tiles runs each run of N-tiles over one input window."""
    shape = lambda c, g: geometry.Shape(4, 4, c, c, (3, 3), (1, 1), (1, 1), groups=g)  # noqa: E731
    windows = [(p.k0, p.k1, p.c0, p.c1) for p in mapping.parts(shape(72, 3), ENGINE)]
    assert windows == [(0, 16, 0, 32), (16, 32, 0, 48), (32, 48, 16, 48), (48, 72, 48, 72)]
    assert [(p.c0, p.c1) for p in mapping.parts(shape(40, 40), ENGINE)] == [(0, 16), (16, 32), (32, 40)]
    assert [(p.k0, p.k1, p.c0, p.c1) for p in mapping.parts(shape(64, 2), ENGINE)] == [(0, 32, 0, 32), (32, 64, 32, 64)]
    assert [p.shape.groups for p in mapping.parts(shape(72, 3), ENGINE)] == [1] * 4


def test_groups_must_divide_channels():
    with pytest.raises(PyiosoError, match=r"groups=3 must divide C_in=16 and C_out=24"):
        mapping.parts(geometry.Shape(4, 4, 16, 24, (1, 1), (1, 1), (0, 0), groups=3), ENGINE)


def test_a_smaller_shift_without_codes_keeps_golden():
    """A depthwise layer calibrated with n = 0 runs on the n = 4 engine: S grows 16-fold, F by
    4 and B 16-fold, and golden of the rescaled layer equals golden of the layer (§3)."""
    x, layer = random_case(7, 7, 24, 24, 3, 1, 1, 4, 4, seed=5, isg_shift=0, groups=24)
    engine_layer = mapping.at_engine_shift(layer, ENGINE)
    assert engine_layer.isg_shift == 4 and engine_layer.requant.shift == layer.requant.shift + 4
    assert torch.equal(golden.conv(x, engine_layer), golden.conv(x, layer))
    _check_passes(x, layer, Depths(act=40))


def test_dilation_2():
    x, layer = _case()
    _refused(r"dilation \(2, 2\) is not supported by the engine: use 1", x, replace(layer, dilation=(2, 2)))


@pytest.mark.parametrize("stride", [(1, 2), (8, 8)])
def test_stride(stride):
    x, layer = _case(h=9, w=9, pad=0)
    _refused(rf"stride \({stride[0]}, {stride[1]}\): the engine takes one stride of 1..7",
             x, replace(layer, stride=stride))


@pytest.mark.parametrize("w_bits, a_bits", [(8, 4), (4, 8)])
def test_bits_above_ports(w_bits, a_bits):
    x, layer = _case(w_bits=w_bits, a_bits=a_bits)
    _refused(rf"bit widths W{w_bits}A{a_bits}->A{a_bits} exceed the engine's 4-bit weight and "
             "4-bit code ports", x, layer, EngineParams(w_bits=4, a_bits=4))


@pytest.mark.parametrize("shift, params, built", [
    (3, ENGINE, "n=4"), (5, ENGINE, "n=4"),
    (4, EngineParams(isg=False), r"no IOSO unit \(n=0, all codes 0\)")])
def test_isg_shift_mismatch(shift, params, built):
    """A layer with ISG codes runs only at the build's shift (48 channels: all three codes)."""
    x, layer = _case(c_in=48, shift=shift)
    assert layer.isg_codes.unique().numel() == 3
    _refused(rf"the layer uses ISG shift n={shift}, the engine was built with {built}", x, layer, params)


def test_codes_on_an_engine_without_isg():
    """n=0 matches a no-ISG engine only if every code is 0 too (γ = 1 + s·2^0 would be 0 or 2)."""
    x, layer = _case(shift=0)
    coded = replace(layer, isg_codes=torch.ones(16, dtype=torch.int64))
    _refused(r"ISG shift n=0, the engine was built with no IOSO unit", x, coded, EngineParams(isg=False))


def test_k_tile_with_two_codes():
    x, layer = _case(c_in=24)
    split = replace(layer, isg_codes=golden.channel_codes([8, 16], [0, 1]))
    _refused(r"input channels 0..15 hold ISG codes \[0, 1\]: every tile of 16 channels must lie in "
             "one group", x, split)


def test_accumulator_overflow():
    """W8A8 over 9x64 taps reaches ~2^26 after the IOSO factor: beyond a 25-bit accumulator."""
    x, layer = _case(c_in=64, w_bits=8, a_bits=8)
    _refused(r"the accumulator can reach \d+, which overflows a 25-bit accumulator", x, layer,
             EngineParams(acc_width=25))


@pytest.mark.parametrize("shape", [(2, 6, 6, 16), (1, 6, 6, 15), (6, 6, 16)])
def test_input_shape(shape):
    _, layer = _case()
    _refused(r"the engine takes one NHWC image with 16 channels", torch.zeros(shape, dtype=torch.int64),
             layer)


def test_window_larger_than_input():
    x, layer = _case(h=2, w=2, k=5, pad=1)
    _refused(r"a 5x5 window .* does not fit a 2x2 input", x, layer)


@pytest.mark.parametrize("multiplier, offset, why", [
    (2 ** 23 + 5, 0, r"the multiplier M 8388613 lies outside the 24-bit signed multiplier"),
    (-2 ** 30, 0, r"the multiplier M -1073741824 lies outside"),
    (2 ** 40, 0, r"the multiplier M 1099511627776 lies outside"),
    (1, 2 ** 62, r"t = S\*M \+ B overflows 57 bits"),
])
def test_tables_beyond_the_engine_are_refused(multiplier, offset, why):
    """Tables a tampered artifact could hold: refused before any pass is planned, never cut to
    the bits of a field (issue 26: M = 2^40 once ran as its low 32 bits)."""
    x, layer = _case()
    rq = layer.requant
    tampered = replace(layer, requant=replace(rq, multiplier=rq.multiplier.clone().fill_(multiplier),
                                              offset=rq.offset.clone().fill_(offset)))
    _refused(why, x, tampered)


def test_fields_are_never_truncated():
    assert driver.pack_field(-1, slice(32, 96)) == ((1 << 64) - 1) << 32
    with pytest.raises(PyiosoError, match=r"2\*\*40|1099511627776 does not fit a 32-bit field"):
        driver.pack_field(2 ** 40, slice(0, 32))


def test_too_many_input_tiles():
    x, layer = _case(c_in=40)
    _refused(r"3 input-channel tiles exceed the engine's 2", x, layer, depths=Depths(tiles=2))


@pytest.mark.parametrize("depths, needs", [
    (Depths(act=10), "18 ACT words of 10"), (Depths(weight=100), "144 WEIGHT rows of 100"),
    (Depths(acc=3), "6 accumulator rows of 3"), (Depths(out=3), "6 OUT words of 3"),
    (Depths(channels=8), "16 TABLE entries of 8")], ids=["act", "weight", "acc", "out", "channels"])
def test_one_row_does_not_fit(depths, needs):
    """A 6x6 input with a 3x3 kernel: one output row needs up to 3 input rows (18 ACT words),
    144 weight rows, 16 table entries, 6 accumulator and 6 OUT words."""
    _refused(rf"even one output row of one channel tile does not fit the scratchpads \(it needs "
             rf"{needs}\): build the engine with larger scratchpads", *_case(), depths=depths)


def _words_to_codes(words, shape):
    """Byte lanes of 128-bit words (lane 0 lowest) as an int64 array of `shape`."""
    raw = np.frombuffer(b"".join(w.to_bytes(16, "little") for w in words), dtype=np.uint8)
    return torch.from_numpy(raw.reshape(shape).astype(np.int64))


def _depthwise_part(layer, k0, k1):
    """Channels [k0, k1) of a depthwise layer, as a depthwise layer of their own."""
    rq = layer.requant
    return replace(layer, weight=layer.weight[k0:k1], groups=k1 - k0, isg_codes=layer.isg_codes[k0:k1],
                   requant=replace(rq, multiplier=rq.multiplier[k0:k1], offset=rq.offset[k0:k1]))


def _pass_output(p, part, layer):
    """Golden on the pass's own input: its ACT words with PAD_TOP rows of zero-point above and
    as many below as its last window needs, through the pass's dense part of the layer (in DW
    mode: its channels of the depthwise layer); the pass's channel tiles of the result."""
    d = p.descriptor
    if d[Csr.MODE] == Mode.DW:
        k0 = p.nt0 * 16
        dense = _depthwise_part(layer, k0, min(layer.c_in, p.nt1 * 16))
        part = replace(part, nt0=p.nt0)
    else:
        dense = mapping.dense_part(layer, part)
    x = _words_to_codes(p.act, (d[Csr.H], d[Csr.W], d[Csr.CT] * 16))
    assert (x[:, :, dense.c_in:] == layer.in_zero_point).all()      # pad channels hold z (§4)
    rows = (d[Csr.HO] - 1) * d[Csr.STRIDE] + d[Csr.KH]
    bottom = max(0, rows - d[Csr.PAD_TOP] - d[Csr.H])
    x = F.pad(x[None, :, :, :dense.c_in], (0, 0, 0, 0, d[Csr.PAD_TOP], bottom), value=layer.in_zero_point)
    y = golden.conv(x, replace(dense, padding=(0, layer.padding[1])))
    return y[:, :d[Csr.HO], :, (p.nt0 - part.nt0) * 16:(p.nt1 - part.nt0) * 16]


SPLITS = {   # id: (H, W, C_in, C_out, K, stride, pad), Depths forcing row and channel-tile passes
    "3x3s2": ((13, 11, 20, 40, 3, 2, 1), Depths(act=100, weight=600)),
    "7x7s2p3": ((16, 9, 8, 33, 7, 2, 3), Depths(act=9 * 8, weight=2 * 49 * 16, out=40)),
    "5x5s3p0": ((17, 7, 33, 16, 5, 3, 0), Depths(act=3 * 7 * 8, acc=2)),
    "1x1": ((5, 4, 16, 48, 1, 1, 0), Depths(weight=16, acc=4)),
}


def _check_passes(x, layer, depths):
    """plan()'s passes for `depths`: each fits every scratchpad, every (output row, channel tile)
    lies in exactly one pass, and the passes' golden outputs, each from its own descriptor and
    ACT slice, assemble into golden of the whole layer. Returns the passes."""
    passes = driver.plan(layer, x, ENGINE, depths)
    want = golden.conv(x, layer)
    engine_layer, shape = mapping.at_engine_shift(layer, ENGINE), geometry.Shape.of(layer, x.shape)
    fold = mapping.stem_fold(shape, ENGINE, depths)
    if fold is not mapping.Fold.NONE:                   # a stem: the passes run the folded layer
        folded, x_folded = mapping.fold_kernel(engine_layer, x, fold)
        assert torch.equal(golden.conv(x_folded, folded), want)
        engine_layer, shape = folded, geometry.Shape.of(folded, x_folded.shape)
    parts = mapping.parts(shape, ENGINE)
    ho, wo, c_out = want.shape[1:]
    nt = -(-c_out // 16)
    for p in passes:
        assert len(p.act) <= depths.act and len(p.weight) <= depths.weight
        assert len(p.table) <= depths.channels and len(p.codes) <= depths.tiles
        assert p.out_words <= depths.out
        assert p.pixels <= depths.acc or p.descriptor[Csr.MODE] == Mode.DW     # DW: no accumulator
    covered = Counter((r, t) for p in passes for r in range(p.row0, p.row1) for t in range(p.nt0, p.nt1))
    assert covered == Counter((r, t) for r in range(ho) for t in range(nt))
    got = torch.full_like(want, -1)
    for p in passes:
        assert p.descriptor[Csr.HO] == p.row1 - p.row0 and p.descriptor[Csr.WO] == wo
        assert 0 <= p.descriptor[Csr.PAD_TOP] <= layer.padding[0]
        part = next(q for q in parts if q.k0 <= p.nt0 * 16 < q.k1)     # (DW mode: any)
        got[:, p.row0:p.row1, :, p.nt0 * 16:p.nt1 * 16] = _pass_output(p, part, engine_layer)
    assert torch.equal(got, want)
    return passes


@pytest.mark.parametrize("shape, depths", SPLITS.values(), ids=SPLITS.keys())
def test_passes_cover_the_layer(shape, depths):
    x, layer = random_case(*shape, 4, 4, seed=2, isg_shift=4)
    passes = _check_passes(x, layer, depths)
    assert len(passes) > 1 and len({p.row0 for p in passes}) > 1


@pytest.mark.parametrize("shape", [(240, 240, 16, 16, 3, 2, 1), (224, 224, 16, 64, 7, 2, 3)],
                         ids=["240px_3x3s2", "resnet_stem_224px"])
def test_middle_slices_fit_act(shape):
    """Issue 27: the split was sized by the first slice, whose top rows are padding, so a
    middle slice loaded more ACT words than the scratchpad holds (16,560 and 16,800 of 16,384
    here) and the last ones overwrote its first input rows. The issue's 3-channel stems now
    run folded (no padding left), so 16 channels keep its geometry: one tile per pixel."""
    x, layer = random_case(*shape, 4, 4, seed=0, isg_shift=4)
    passes = driver.plan(layer, x, ENGINE)
    assert len({p.row0 for p in passes}) >= 3
    assert max(len(p.act) for p in passes) <= Depths().act


def test_resnet_stem_full_fold_at_224px():
    """ResNet's 7x7/2 stem over 3 channels at 224 px runs folded whole: a 1x1 conv over 147
    channels (10 K-tiles, 14 with the columns folded) on the 112 x 112 output grid, whose
    112 x 112 x 10 ACT words split into row slices that fit and assemble golden's output."""
    x, layer = random_case(224, 224, 3, 64, 7, 2, 3, 4, 4, seed=0, isg_shift=4)
    assert mapping.stem_fold(geometry.Shape.of(layer, x.shape), ENGINE) is mapping.Fold.FULL
    passes = _check_passes(x, layer, Depths())
    assert {(p.descriptor[Csr.KH], p.descriptor[Csr.KW], p.descriptor[Csr.CT]) for p in passes} == {(1, 1, 10)}
    assert len(passes) == 8 and sum(len(p.act) for p in passes) == 112 * 112 * 10


@st.composite
def split_layers(draw):
    """A small conv and scratchpads between the least that runs it and the whole layer, so
    that it splits into any number of row slices and channel-tile chunks."""
    k = draw(st.sampled_from([1, 2, 3, 3, 3, 4, 5, 6, 7]))     # 3x3 often: DW mode
    stride, pad = draw(st.integers(1, 4)), draw(st.integers(0, k - 1))
    h = draw(st.integers(max(1, k - 2 * pad), 24))
    w = draw(st.integers(max(1, k - 2 * pad), 8))
    c_in, c_out = draw(st.integers(1, 40)), draw(st.integers(1, 50))
    groups = draw(st.sampled_from([1, 1, c_in] + [g for g in range(2, c_in) if c_in % g == 0]))
    c_out = c_in if groups == c_in else c_out - c_out % groups or groups
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    ct, nt = -(-c_in // 16), -(-c_out // 16)
    kt = k * k * ct
    depths = Depths(act=draw(st.integers(min(h, k) * w * ct, h * w * ct)),
                    weight=draw(st.integers(kt * 16, nt * kt * 16)),
                    acc=draw(st.integers(wo, ho * wo)), out=draw(st.integers(wo, ho * wo * nt)),
                    channels=draw(st.integers(16, nt * 16)), tiles=ct)
    return (h, w, c_in, c_out, k, stride, pad), groups, depths, draw(st.integers(0, 2 ** 16))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(split_layers())
def test_any_split_fits_and_assembles_golden(case):
    """Every layer that one output row of one channel tile can run is split into passes that
    fit the scratchpads and give golden's output, for any slice and chunk counts, dense,
    grouped (any group width) and depthwise."""
    shape, groups, depths, seed = case
    x, layer = random_case(*shape, 4, 4, seed=seed, isg_shift=4, groups=groups)
    passes = _check_passes(x, layer, depths)
    event("dense" if groups == 1 else "grouped" if not layer.depthwise else
          "depthwise, DW mode" if passes[0].descriptor[Csr.MODE] == Mode.DW else "depthwise")
    fold = mapping.stem_fold(geometry.Shape.of(layer, x.shape), ENGINE, depths)
    if fold is not mapping.Fold.NONE:
        event(f"stem, {fold.value} fold")
    n = len({p.row0 for p in passes})
    event(f"row slices: {n if n < 4 else '4+'}")
