#!/usr/bin/env python
"""What a bf16 convolution would buy the block reconstruction on this CPU: one 3x3 conv of
resnet18's layer1 at 32 px (batch 32, 64 -> 64 channels on an 8x8 map), forward and weight +
input backward, in float32 and under torch.autocast(bfloat16), NCHW and channels-last, one thread.
The conv-bound blocks spend most of their loop in exactly these calls (scripts/profile_block.py).

    .venv/bin/python scripts/conv_precision.py
"""

import time

import torch
import torch.nn.functional as F


def step_ms(bf16: bool, channels_last: bool, repeats: int = 100) -> float:
    x = torch.randn(32, 64, 8, 8)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    w = torch.randn(64, 64, 3, 3, requires_grad=True)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = F.conv2d(x, w, padding=1)
        y.float().square().sum().backward()
    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    torch.set_num_threads(1)
    for channels_last in (False, True):
        fp32, bf16 = step_ms(False, channels_last), step_ms(True, channels_last)
        print(f"{'channels-last' if channels_last else 'NCHW':13}  float32 {fp32:.2f} ms  bf16 {bf16:.2f} ms  "
              f"ratio {fp32 / bf16:.2f}x")


if __name__ == "__main__":
    main()
