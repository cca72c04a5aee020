"""How finely weight scales are shared: per tensor, per output channel (the engine's), per vector
(VS-Quant, Dai et al. 2021) and per block with a shared power-of-two exponent (OCP MX-like).

Vectors and blocks run along each output channel's weights in the engine's storage order
(kernel row, kernel column, input channel fastest), so a vector is 16 input channels of one tap
where the layer has that many. Effective bits per weight count the scale overhead as the lecture
does: VS-Quant's 4-bit integer scale per 16 weights adds 4/16 bit, MX's 8-bit exponent per 32
weights 8/32. Per-vector and MX scales are fake-quant only: the engine's array applies one scale
per output channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pyioso.quant.uniform import qrange, safe_scale

GRANULARITIES = ("channel", "tensor", "vector", "mx")
INTEGER_GRANULARITIES = ("channel", "tensor")     # one scale per output channel: what the engine applies
ELEMENT_GRANULARITIES = ("vector", "mx")          # a scale per weight (shared within vectors or blocks)
VECTOR, VECTOR_SCALE_BITS = 16, 4       # VS-Quant: an unsigned 4-bit integer scale per 16 weights
MX_BLOCK, MX_EXPONENT_BITS = 32, 8      # MX: a shared 2^e (E8M0) per 32 weights


def effective_bits(bits: int, granularity: str) -> float:
    """Bits per weight with the per-vector or per-block scale counted (per-channel and per-tensor
    float scales are amortized over whole channels and left out, as the lecture does)."""
    extra = {"vector": VECTOR_SCALE_BITS / VECTOR, "mx": MX_EXPONENT_BITS / MX_BLOCK}.get(granularity, 0.0)
    return bits + extra


def _blocks(weight: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    """Each channel's weights in storage order, zero-padded to whole blocks: ([C, n, size], K)."""
    rows = (weight.permute(0, 2, 3, 1) if weight.dim() == 4 else weight).reshape(weight.shape[0], -1)
    k = rows.shape[1]
    return F.pad(rows, (0, -k % size)).reshape(weight.shape[0], -1, size), k


def _unblock(per_block: torch.Tensor, weight: torch.Tensor, size: int, k: int) -> torch.Tensor:
    """A value per block ([C, n]) spread over its weights, back in the weight's shape."""
    rows = per_block.repeat_interleave(size, dim=1)[:, :k]
    if weight.dim() == 4:
        c, i, kh, kw = weight.shape
        return rows.reshape(c, kh, kw, i).permute(0, 3, 1, 2).contiguous()
    return rows.reshape(weight.shape)


def element_scales(weight: torch.Tensor, bits: int, granularity: str,
                   channel_scale: torch.Tensor) -> torch.Tensor:
    """The per-weight scale of "vector" or "mx" granularity on the signed b-bit grid.

    vector: s_c * v, with s_c = channel_scale / (2^4 - 1) (the channel's range maps to the
    largest vector scale) and v = clamp(round(max|w_vector| / (qmax s_c)), 1, 15).
    mx: 2^ceil(log2(max|w_block| / qmax)) per block of 32 (no weight of a block is clipped).
    """
    qmax = qrange(bits, signed=True)[1]
    w = weight.detach()
    if granularity == "vector":
        blocks, k = _blocks(w, VECTOR)
        top = 2 ** VECTOR_SCALE_BITS - 1
        s_c = safe_scale(channel_scale.detach().flatten() / top)[:, None]
        v = torch.clamp(torch.round(blocks.abs().amax(-1) / (qmax * s_c)), 1, top)
        return _unblock(v * s_c, w, VECTOR, k)
    blocks, k = _blocks(w, MX_BLOCK)
    amax = blocks.abs().amax(-1)
    exponent = torch.ceil(torch.log2(torch.where(amax > 0, amax / qmax, torch.ones_like(amax))))
    return _unblock(torch.exp2(exponent), w, MX_BLOCK, k)
