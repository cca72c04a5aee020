"""Input-channel scale groups (paper Sec. 3.4, Eq. 9-11) and their hardware legalization.

One `InputScale` belongs to a *tensor class*: the tensors joined by channelwise ops, which share
one channel order in storage (ARCHITECTURE §4). Every dense conv reading the class uses it, so
the grouping is tied across consumers (a residual stream feeds a block's first conv and the
downsample conv) and its permutation can be folded into the producers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from golden.errors import PyiosoError
from golden.spec import PAPER_GROUP_CODES
from pyioso.quant.rounding import GAMMA, ZETA

# Probability at which the rectified softmax saturates at 1: the channel is "fixed" (App. D.6).
FIXED_PROB = (1 - GAMMA) / (ZETA - GAMMA)


class InputScale(nn.Module):
    """Per-input-channel scale gamma^y of one tensor class.

    Modes: 'none' (gamma = 1), 'soft' (learned logits R over the groups, Eq. 9-10), 'hard'
    (each channel fixed to a group code: gamma = 1 + code / 2^n), 'free' (an ungrouped,
    continuous learned scale per channel: the paper's Table 4 row that hardware cannot run).
    """

    def __init__(self, channels: int, shift: int, group_codes=PAPER_GROUP_CODES):
        super().__init__()
        self.channels, self.shift, self.mode = channels, shift, "none"
        self.register_buffer("group_codes", torch.tensor(group_codes, dtype=torch.int64))
        self.register_buffer("codes", torch.zeros(channels, dtype=torch.int64))
        self.register_buffer("fixed_at", torch.full((channels,), -1, dtype=torch.int64))
        self.logits = nn.Parameter(torch.zeros(channels, len(group_codes)), requires_grad=False)
        self.log_scale = nn.Parameter(torch.zeros(channels), requires_grad=False)

    @property
    def group_scales(self) -> torch.Tensor:
        return 1 + self.group_codes.to(self.logits.dtype) / 2 ** self.shift

    def probabilities(self) -> torch.Tensor:
        """s(R) of Eq. 10: the stretched, clipped softmax, [C, g]."""
        return torch.clamp(torch.softmax(self.logits, dim=1) * (ZETA - GAMMA) + GAMMA, 0, 1)

    def forward(self) -> torch.Tensor:
        """gamma^y per channel, [C]."""
        if self.mode == "soft":
            s = self.probabilities()
            return (s * self.group_scales).sum(1) / s.sum(1)
        if self.mode == "hard":
            return 1 + self.codes.to(self.logits.dtype) / 2 ** self.shift
        if self.mode == "free":
            return torch.exp(self.log_scale)
        return torch.ones(self.channels, dtype=self.logits.dtype, device=self.logits.device)

    def regularizer(self, beta: float) -> torch.Tensor:
        """Eq. 11's group term sum(1 - |2 s(R) - 1|^beta) (0 at beta = 0, as AdaRound's)."""
        return (1 - (2 * self.probabilities() - 1).abs().pow(beta)).sum()

    def record_fixed(self, iteration: int) -> None:
        """Remember when each channel's largest probability first reached 1 (its priority)."""
        with torch.no_grad():
            new = (self.probabilities().amax(1) >= 1) & (self.fixed_at < 0)
            self.fixed_at[new] = iteration

    def learn(self, mode: str) -> None:
        """Start training in `mode` ('soft' or 'free')."""
        self.mode = mode
        self.logits.requires_grad_(mode == "soft")
        self.log_scale.requires_grad_(mode == "free")

    def legalize(self, granularity: int, permutable: bool) -> None:
        """Fix every channel to a group the hardware can run and stop learning R: with a
        permutation, group sizes in multiples of `granularity`; in a pinned channel order
        (network input, grouped convs), one group per K-tile of `granularity` channels."""
        probs = self.probabilities().detach()
        groups = legal_groups(probs, self.fixed_at, granularity) if permutable else \
            tile_groups(probs, granularity)
        self.codes.copy_(self.group_codes[groups])
        self.mode = "hard"
        self.logits.requires_grad_(False)


def group_tiles(wanted: list[int], channels: int, granularity: int) -> list[int]:
    """Tiles of `granularity` channels per group: the wanted counts rounded by largest
    remainder so that the tiles hold every channel (the last group takes the pad channels)."""
    tiles = math.ceil(channels / granularity)
    exact = [w / granularity for w in wanted]
    out = [math.floor(e) for e in exact]
    order = sorted(range(len(wanted)), key=lambda p: (-(exact[p] - out[p]), p))
    for p in order[:tiles - sum(out)]:
        out[p] += 1
    return out


def legal_groups(probs: torch.Tensor, fixed_at: torch.Tensor, granularity: int) -> torch.Tensor:
    """Group index per channel such that every group but one holds a multiple of `granularity`
    channels (ARCHITECTURE §4), following App. D.6: group sizes follow the channels' preferred
    groups, and channels fixed earliest choose first; a channel whose group is full takes its
    next most probable group with room.
    """
    if granularity < 1:
        raise PyiosoError(f"granularity={granularity}: use a positive channel count (the array's rows)")
    channels, groups = probs.shape
    preferred = probs.argmax(1)
    tiles = group_tiles([int((preferred == p).sum()) for p in range(groups)], channels, granularity)
    capacity = [t * granularity for t in tiles]
    # The pad channels of the last K-tile live in the largest group: it is stored last.
    capacity[max(range(groups), key=lambda p: (tiles[p], -p))] -= sum(capacity) - channels
    never = torch.iinfo(torch.int64).max
    when = torch.where(fixed_at >= 0, fixed_at, never)
    confidence = probs.amax(1)
    priority = sorted(range(channels), key=lambda c: (int(when[c]), -float(confidence[c]), c))
    choice = torch.empty(channels, dtype=torch.int64)
    for c in priority:
        for p in torch.argsort(probs[c], descending=True, stable=True).tolist():
            if capacity[p] > 0:
                capacity[p] -= 1
                choice[c] = p
                break
    return choice


def tile_groups(probs: torch.Tensor, granularity: int) -> torch.Tensor:
    """Group per channel, constant over each K-tile of `granularity` consecutive channels: the
    group with the largest summed probability in the tile."""
    tiles = torch.arange(probs.shape[0]) // granularity
    summed = torch.zeros(int(tiles[-1]) + 1, probs.shape[1]).index_add_(0, tiles, probs)
    return summed.argmax(1)[tiles]


def storage_order(codes: torch.Tensor, granularity: int,
                  group_codes=PAPER_GROUP_CODES) -> tuple[torch.Tensor, list[int], list[int]]:
    """(permutation, group sizes, group codes) that make the groups contiguous in storage:
    groups whose size is a multiple of `granularity` first, the one with a remainder last;
    within a group channels keep their order. perm[j] is the channel stored at position j."""
    present = [k for k in group_codes if bool((codes == k).any())]
    present.sort(key=lambda k: int((codes == k).sum()) % granularity != 0)
    perm = torch.cat([torch.nonzero(codes == k).flatten() for k in present])
    sizes = [int((codes == k).sum()) for k in present]
    return perm, sizes, present
