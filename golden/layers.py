"""Integer layer descriptors (ARCHITECTURE §1-§5), validated on construction.

A descriptor holds only integers: codes, zero-points, ISG codes and fixed-point tables. Building
one from floats is pyioso.quant.fixedpoint's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from golden.errors import PyiosoError
from golden.spec import ACT_BITS, GRANULARITY, ISG_SHIFTS, MAX_SHIFT, W_BITS


def check_bits(bits: int, what: str, allowed: range = ACT_BITS) -> None:
    if not isinstance(bits, int) or bits not in allowed:
        raise PyiosoError(f"{what}={bits!r} is out of range: the integer datapath supports "
                          f"{allowed.start}..{allowed.stop - 1} bits")


def check_zero_point(zero_point: int, bits: int, what: str) -> None:
    if not 0 <= zero_point <= 2 ** bits - 1:
        raise PyiosoError(f"{what}={zero_point} does not fit an unsigned {bits}-bit code: "
                          f"use 0..{2 ** bits - 1}")


def channel_codes(sizes, codes) -> torch.Tensor:
    """Expand contiguous group sizes and group codes (§2) into one code per stored channel."""
    sizes, codes = list(sizes), list(codes)
    if len(sizes) != len(codes):
        raise PyiosoError(f"{len(sizes)} group sizes but {len(codes)} group codes: give one "
                          "code per group")
    if any(s < 0 for s in sizes):
        raise PyiosoError(f"group sizes {sizes} contain a negative size")
    _check_codes(torch.tensor(codes, dtype=torch.int64))
    return torch.repeat_interleave(torch.tensor(codes, dtype=torch.int64),
                                   torch.tensor(sizes, dtype=torch.int64))


def check_hw_grouping(sizes, c_in: int, granularity: int = GRANULARITY) -> None:
    """§4: sizes sum to C_in and every group but the last non-empty one is a multiple of G."""
    sizes = list(sizes)
    if sum(sizes) != c_in:
        raise PyiosoError(f"group sizes {sizes} sum to {sum(sizes)}, but the layer has "
                          f"C_in={c_in}: make them sum to C_in")
    nonempty = [i for i, s in enumerate(sizes) if s > 0]
    for i in nonempty[:-1]:
        if sizes[i] % granularity:
            raise PyiosoError(
                f"group {i} has {sizes[i]} channels, not a multiple of the array's "
                f"{granularity} rows: only the last non-empty group may have a remainder "
                f"(ARCHITECTURE §4); move {sizes[i] % granularity} channels to another group")


def uniform_tiles(codes: torch.Tensor, granularity: int = GRANULARITY) -> bool:
    """True when every K-tile of `granularity` consecutive channels holds one code (§4)."""
    pad = -codes.numel() % granularity
    tiles = torch.cat([codes, codes[-1:].expand(pad)]).reshape(-1, granularity)
    return bool((tiles == tiles[:, :1]).all())


def weight_input_channels(weight_shape, groups: int) -> torch.Tensor:
    """[C_out, C_in/groups] map: the layer input channel that weight[k, :, :, c] reads."""
    c_out, c_in_g = weight_shape[0], weight_shape[3]
    return (torch.arange(c_out)[:, None] // (c_out // groups)) * c_in_g + torch.arange(c_in_g)


def conv_output_size(size: tuple[int, int], layer) -> tuple[int, int]:
    """(Ho, Wo) of a conv or pool on an HxW input; refuses shapes that cannot be convolved."""
    kernel = layer.kernel if hasattr(layer, "kernel") else layer.weight.shape[1:3]
    dilation = getattr(layer, "dilation", (1, 1))
    out = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
                zip(size, layer.padding, dilation, kernel, layer.stride))
    if min(out) < 1:
        raise PyiosoError(f"a {kernel[0]}x{kernel[1]} window (dilation {tuple(dilation)}) does not "
                          f"fit a {size[0]}x{size[1]} input with padding {tuple(layer.padding)}: "
                          "use a larger input, more padding or a smaller kernel")
    return out


def scaled_weights(weight: torch.Tensor, codes: torch.Tensor, shift: int, groups: int) -> torch.Tensor:
    """f_i * w per output channel, flattened over taps: [C_out, KH*KW*C_in/groups] (§2)."""
    factors = (1 << shift) + codes[weight_input_channels(weight.shape, groups)]
    return (weight.to(torch.int64) * factors[:, None, None, :]).flatten(1)


def sum_bounds(scaled: torch.Tensor, in_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """§7: per output channel, the range that every partial sum of S stays inside, from the
    scaled weights f_i w of `scaled_weights`."""
    top = 2 ** in_bits - 1
    return top * scaled.clamp(max=0).sum(1), top * scaled.clamp(min=0).sum(1)


def check_accumulator(scaled: torch.Tensor, in_bits: int, acc_width: int) -> None:
    """§7: refuses a layer whose partial sums can leave a signed `acc_width`-bit accumulator."""
    lo, hi = sum_bounds(scaled, in_bits)
    top = 2 ** (acc_width - 1)
    if lo.numel() and (lo.min() < -top or hi.max() >= top):
        raise PyiosoError(f"the accumulator can reach {max(-lo.min().item(), hi.max().item())}, "
                          f"which overflows a {acc_width}-bit accumulator (ARCHITECTURE §7): use "
                          "fewer activation or weight bits, or build the engine with a wider "
                          "accumulator")


def check_multipliers(values: list[int], width: int, what: str) -> None:
    """§3, §7: refuses multipliers outside a signed `width`-bit table (W_M)."""
    top = 1 << (width - 1)
    bad = [v for v in values if not -top <= v < top]
    if bad:
        raise PyiosoError(f"{what} {bad[0]} lies outside the {width}-bit signed multiplier "
                          "(W_M, ARCHITECTURE §3, §7): re-export the layer (the calibrator keeps "
                          "M inside W_M), or build the engine with a wider mult_width")


def check_bn_product(scaled: torch.Tensor, in_bits: int, requant: "Requant", t_width: int) -> None:
    """§7: refuses tables whose t = S*M + B can leave a signed `t_width`-bit product (M is
    taken to lie within W_M: check_multipliers first)."""
    s_min, s_max = sum_bounds(scaled, in_bits)
    s_abs = torch.maximum(-s_min, s_max)
    top = 2 ** (t_width - 1)
    b = requant.offset
    if b.numel() and ((b < -top) | (b >= top)).any() or (
            (s_abs * requant.multiplier.abs() + b.abs()).max() >= top):
        raise PyiosoError(f"t = S*M + B overflows {t_width} bits (ARCHITECTURE §7): the offset "
                          "table is too large; check the bias and zero-point of this layer")


def _check_perm(perm: torch.Tensor, size: int) -> None:
    if perm.shape != (size,) or not torch.equal(perm.sort().values, torch.arange(size)):
        raise PyiosoError(f"a channel permutation of {size} channels must hold each of "
                          f"0..{size - 1} exactly once")


def _check_codes(codes: torch.Tensor) -> None:
    bad = codes[(codes < -1) | (codes > 1)]
    if bad.numel():
        raise PyiosoError(f"ISG code {int(bad[0])} is not in {{-1, 0, +1}}")


def _check_int_table(table: torch.Tensor, length: int, what: str) -> None:
    if table.dtype != torch.int64 or table.shape != (length,):
        raise PyiosoError(f"{what} must be an int64 tensor of shape ({length},), got "
                          f"{table.dtype} {tuple(table.shape)}")


def _check_no_offset(rq: "Requant", what: str) -> None:
    if rq.offset.any():
        raise PyiosoError(f"{what} has no offset term (ARCHITECTURE §5): pass B = 0")


def activation_bounds(activation: str, bits: int, zero_point: int, scale: float) -> tuple[int, int]:
    """§3 clamp bounds: ReLU clamps at the zero-point, ReLU6 also at the code of 6.0."""
    hi = 2 ** bits - 1
    if activation == "none":
        return 0, hi
    if activation == "relu":
        return zero_point, hi
    if activation == "relu6":
        return zero_point, min(hi, zero_point + math.floor(6.0 / scale + 0.5))
    raise PyiosoError(f"activation {activation!r} is not supported: use none, relu or relu6")


def check_conv_geometry(layer) -> None:
    """Checks shared by the integer Conv and the float layer it is built from (§1, §2)."""
    check_bits(layer.w_bits, "weight bits", W_BITS)
    check_bits(layer.in_bits, "input bits")
    check_zero_point(layer.in_zero_point, layer.in_bits, "input zero-point")
    weight = layer.weight
    if weight.dim() != 4 or weight.dtype.is_floating_point:
        raise PyiosoError("weight must be an integer tensor [C_out, KH, KW, C_in/groups], "
                          f"got {weight.dtype} {tuple(weight.shape)}")
    lo, hi = -2 ** (layer.w_bits - 1), 2 ** (layer.w_bits - 1) - 1
    if weight.numel() and (weight.min() < lo or weight.max() > hi):
        raise PyiosoError(f"weight codes span {int(weight.min())}..{int(weight.max())}, "
                          f"outside signed {layer.w_bits}-bit {lo}..{hi}")
    if layer.isg_shift not in ISG_SHIFTS:
        raise PyiosoError(f"ISG shift n={layer.isg_shift} is out of range: use 0..8")
    c_out, c_in_g = weight.shape[0], weight.shape[3]
    if layer.groups < 1 or c_out % layer.groups:
        raise PyiosoError(f"groups={layer.groups} must divide C_in={c_in_g * layer.groups} and "
                          f"C_out={c_out}")
    if layer.isg_codes is not None:
        _check_int_table(layer.isg_codes, c_in_g * layer.groups, "ISG codes")
        _check_codes(layer.isg_codes)
    for name in ("stride", "dilation"):
        if min(getattr(layer, name)) < 1:
            raise PyiosoError(f"{name}={getattr(layer, name)} must be >= 1")
    if min(layer.padding) < 0:
        raise PyiosoError(f"padding={layer.padding} must be >= 0")


@dataclass(frozen=True)
class Requant:
    """§3 output stage: y = clamp(((S*M + B + 2^(F-1)) >> F) + z_out, lo, hi), per channel."""

    multiplier: torch.Tensor   # int64 [C]
    offset: torch.Tensor       # int64 [C]
    shift: int
    zero_point: int
    bits: int
    lo: int
    hi: int

    def __post_init__(self):
        check_bits(self.bits, "output bits")
        check_zero_point(self.zero_point, self.bits, "output zero-point")
        _check_int_table(self.offset, self.multiplier.shape[0], "offset table B")
        _check_int_table(self.multiplier, self.multiplier.shape[0], "multiplier table M")
        if not 1 <= self.shift <= MAX_SHIFT:
            raise PyiosoError(f"shift F={self.shift} is out of range: use 1..{MAX_SHIFT}")
        if not 0 <= self.lo <= self.hi <= 2 ** self.bits - 1:
            raise PyiosoError(f"clamp bounds lo={self.lo}, hi={self.hi} are not inside "
                              f"0..{2 ** self.bits - 1} with lo <= hi")

    @property
    def channels(self) -> int:
        return self.multiplier.shape[0]


@dataclass(frozen=True)
class Conv:
    """A conv (or FC as a 1x1 conv) with ISG and its requant tables (§1-§3)."""

    weight: torch.Tensor       # integer codes [C_out, KH, KW, C_in/groups]
    w_bits: int
    in_bits: int
    in_zero_point: int
    isg_shift: int             # n
    isg_codes: torch.Tensor    # int64 [C_in], one code per stored input channel
    requant: Requant
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self):
        check_conv_geometry(self)
        c_out = self.weight.shape[0]
        if self.requant.channels != c_out:
            raise PyiosoError(f"requant tables have {self.requant.channels} channels but the "
                              f"weight has C_out={c_out}")

    @property
    def c_in(self) -> int:
        return self.weight.shape[3] * self.groups

    @property
    def kernel(self) -> tuple[int, int]:
        return self.weight.shape[1], self.weight.shape[2]

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.c_in == self.weight.shape[0]

    def channel_factors(self) -> torch.Tensor:
        """f_i = 2^n + s_i per stored input channel (§2)."""
        return (1 << self.isg_shift) + self.isg_codes

    def permute_outputs(self, perm: torch.Tensor) -> "Conv":
        """§4: the producer side of a permutation: output channel j becomes old channel perm[j]."""
        _check_perm(perm, self.weight.shape[0])
        codes = self.isg_codes
        if self.depthwise:      # channelwise: its input order follows (carried through)
            codes = codes[perm]
        elif self.groups != 1:
            raise PyiosoError("permuting the outputs of a grouped conv would mix its groups: "
                              "fold the permutation into a dense producer (ARCHITECTURE §4)")
        rq = self.requant
        return replace(self, weight=self.weight[perm], isg_codes=codes, requant=replace(
            rq, multiplier=rq.multiplier[perm], offset=rq.offset[perm]))

    def permute_inputs(self, perm: torch.Tensor) -> "Conv":
        """§4: the consumer side: input channel j becomes old input channel perm[j]."""
        _check_perm(perm, self.c_in)
        if self.groups != 1:
            raise PyiosoError("only dense convs take an input permutation; a grouped conv "
                              "passes it through to its producer (ARCHITECTURE §4)")
        return replace(self, weight=self.weight[..., perm], isg_codes=self.isg_codes[perm])


@dataclass(frozen=True)
class Add:
    """§5 residual add: y = clamp((((x1-z1)*M1 + (x2-z2)*M2 + 2^(F-1)) >> F) + z_o, lo, hi)."""

    zero_points: tuple[int, int]
    in_bits: tuple[int, int]
    requant: Requant           # multiplier = [M1, M2], offset = [0, 0]

    def __post_init__(self):
        for z, b in zip(self.zero_points, self.in_bits):
            check_bits(b, "input bits")
            check_zero_point(z, b, "input zero-point")
        if self.requant.channels != 2:
            raise PyiosoError("a residual add needs exactly two multipliers [M1, M2]")
        _check_no_offset(self.requant, "a residual add")


@dataclass(frozen=True)
class MaxPool:
    """§5 max pool: max of codes over the window's in-bounds taps; no tables, the output keeps
    the input's (s, z)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    bits: int

    def __post_init__(self):
        check_bits(self.bits, "input bits")
        if min(self.kernel) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise PyiosoError(f"max pool kernel {self.kernel}, stride {self.stride}, padding "
                              f"{self.padding}: use kernel and stride >= 1, padding >= 0")


@dataclass(frozen=True)
class AvgPool:
    """§5 average pool: t = (sum - N*z)*M over N taps (padding inserts z)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    in_bits: int
    in_zero_point: int
    requant: Requant           # one multiplier, offset 0

    def __post_init__(self):
        check_bits(self.in_bits, "input bits")
        check_zero_point(self.in_zero_point, self.in_bits, "input zero-point")
        if self.requant.channels != 1:
            raise PyiosoError("an average pool has one multiplier")
        _check_no_offset(self.requant, "an average pool")
