"""Image preprocessing as torchvision's ImageNet models expect it: grayscale photographs resized
and repeated to three channels, every image standardized by the ImageNet mean and std.
"""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def standardize(x: torch.Tensor) -> torch.Tensor:
    """[..., 3, h, w] float in 0..1 -> ImageNet-standardized."""
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


def normalize(gray: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [n, h, w] grayscale -> [n, 3, size, size] float, ImageNet-normalized."""
    x = gray.to(torch.float32)[:, None] / 255.0
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return standardize(x.repeat(1, 3, 1, 1))
