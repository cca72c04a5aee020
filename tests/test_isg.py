"""pyioso.calib.isg on its own: the input scales of Eq. 9-11 and their hardware legalization
(ARCHITECTURE §2, §4), for any probabilities, channel counts and granularities."""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import golden
from golden.errors import PyiosoError
from golden.spec import GRANULARITY, PAPER_GROUP_CODES
from golden.layers import uniform_tiles
from pyioso.calib.isg import FIXED_PROB, InputScale, group_tiles, legal_groups, storage_order, tile_groups

PROPS = settings(max_examples=150, deadline=None, derandomize=True)


@st.composite
def grouping_problems(draw):
    """(probabilities [C, 3], fixed_at [C], granularity): rows of a rectified softmax."""
    granularity = draw(st.sampled_from([1, 2, 4, 16]))
    channels = draw(st.integers(1, 70))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31 - 1)))
    probs = torch.softmax(3 * torch.randn(channels, 3, generator=gen), dim=1)
    fixed = torch.randint(-1, 5, (channels,), generator=gen)
    return probs, fixed, granularity


@PROPS
@given(st.lists(st.integers(0, 100), min_size=1, max_size=5), st.sampled_from([1, 3, 16]))
def test_group_tiles_hold_every_channel(wanted, granularity):
    channels = max(1, sum(wanted))
    tiles = group_tiles(wanted, channels, granularity)
    assert sum(tiles) == math.ceil(channels / granularity)
    for want, got in zip(wanted, tiles):        # largest remainder: within one tile of the wish
        assert abs(got - want / granularity) < 1 + 1e-9


@PROPS
@given(grouping_problems())
def test_legal_groups_store_as_a_hardware_grouping(problem):
    """Every group but one holds a multiple of G channels, so the storage order of the codes
    passes golden's §4 check, and each K-tile of the stored channels has one code."""
    probs, fixed, granularity = problem
    groups = legal_groups(probs, fixed, granularity)
    assert groups.shape == (probs.shape[0],) and 0 <= int(groups.min()) and int(groups.max()) < 3
    codes = torch.tensor(PAPER_GROUP_CODES)[groups]
    perm, sizes, present = storage_order(codes, granularity)
    assert sorted(perm.tolist()) == list(range(len(codes)))
    golden.check_hw_grouping(sizes, len(codes), granularity)
    assert uniform_tiles(codes[perm], granularity)
    assert torch.equal(golden.channel_codes(sizes, present), codes[perm])


def test_legal_groups_follow_preference_and_earliest_fixed_channel_first():
    """Five channels want group 0, three group 1, G = 4: the tiles are rounded to one each, so
    one of the five moves to its second choice, and it is the one fixed last (App. D.6)."""
    probs = torch.tensor([[0.9, 0.1, 0.0]] * 5 + [[0.1, 0.9, 0.0]] * 3)
    fixed = torch.tensor([4, 0, 1, 2, 3, -1, -1, -1])
    assert legal_groups(probs, fixed, 4).tolist() == [1, 0, 0, 0, 0, 1, 1, 1]


def test_tile_groups_are_constant_per_tile():
    probs = torch.tensor([[0.6, 0.4, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    assert tile_groups(probs, 2).tolist() == [1, 1, 2]
    assert tile_groups(probs, 1).tolist() == [0, 1, 2]


def test_uniform_tiles():
    assert uniform_tiles(torch.tensor([1, 1, -1, -1, 0]), 2)        # the last tile is padded
    assert not uniform_tiles(torch.tensor([1, -1, 0, 0]), 2)


def test_bad_granularity():
    with pytest.raises(PyiosoError, match="granularity=0: use a positive channel count"):
        legal_groups(torch.ones(4, 3) / 3, torch.full((4,), -1), 0)


def test_input_scale_modes():
    """none: 1; soft: the s(R)-weighted mean of the group scales (Eq. 9-10); hard after
    legalize: exactly 1 + s 2^-n per channel; free: exp of the learned log-scale."""
    scale = InputScale(2 * GRANULARITY, shift=4)
    assert torch.equal(scale(), torch.ones(2 * GRANULARITY))
    scale.learn("soft")
    assert scale.logits.requires_grad and not scale.log_scale.requires_grad
    with torch.no_grad():
        scale.logits[:, 2] = 10.0                  # every channel wants 1 + 2^-4
    assert torch.allclose(scale(), torch.full((2 * GRANULARITY,), 1 + 2 ** -4))
    assert scale.probabilities().amax() <= 1 and scale.regularizer(2.0) >= 0
    scale.record_fixed(7)
    assert (scale.fixed_at == 7).all() and scale.probabilities().amax(1).min() >= FIXED_PROB - 1e-6
    scale.legalize(GRANULARITY, permutable=True)
    assert scale.mode == "hard" and not scale.logits.requires_grad
    assert torch.equal(scale(), torch.full((2 * GRANULARITY,), 1 + 2 ** -4))
    scale.learn("free")
    assert torch.equal(scale(), torch.ones(2 * GRANULARITY))
