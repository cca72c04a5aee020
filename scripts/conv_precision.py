#!/usr/bin/env python
"""What a cheaper convolution would buy the block reconstruction on this CPU: one 3x3 conv of
each resnet18 stage at 32 px (batch 32; 64 channels on an 8x8 map, 128 on 4x4, 256 on 2x2),
forward and weight + input backward, one thread, three ways: oneDNN in float32 (what both
pyioso and the reference code run), oneDNN under torch.autocast(bfloat16), and float32 as an
explicit im2col (torch's unfold) times a GEMM (MKL), whose backward folds the input gradient
back. The conv-bound blocks spend most of their loop in exactly these calls
(scripts/profile_block.py).

    .venv/bin/python scripts/conv_precision.py
"""

import time

import torch
import torch.nn.functional as F

STAGES = (("layer1", 64, 8), ("layer2", 128, 4), ("layer3", 256, 2))      # name, channels, map side


def _conv(kind: str, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if kind == "im2col":
        n, _, h, width = x.shape
        columns = F.unfold(x, 3, padding=1).transpose(1, 2)        # [N, H*W, C*9]
        y = columns @ w.reshape(len(w), -1).t()                     # [N, H*W, K]
        return y.transpose(1, 2).reshape(n, len(w), h, width)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind == "bf16"):
        return F.conv2d(x, w, padding=1)


def step_ms(kind: str, channels: int, side: int, repeats: int = 100) -> float:
    x = torch.randn(32, channels, side, side).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    w = torch.randn(channels, channels, 3, 3, requires_grad=True)

    def step():
        _conv(kind, x, w).float().square().sum().backward()
    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    torch.set_num_threads(1)
    for name, channels, side in STAGES:
        fp32, bf16, gemm = (step_ms(kind, channels, side) for kind in ("float32", "bf16", "im2col"))
        print(f"{name} ({channels} ch, {side}x{side}): float32 {fp32:.2f} ms, bf16 {bf16:.2f} ms "
              f"({fp32 / bf16:.2f}x), im2col + GEMM {gemm:.2f} ms ({fp32 / gemm:.2f}x)")


if __name__ == "__main__":
    main()
