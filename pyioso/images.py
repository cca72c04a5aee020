"""Input images for the layer cases and integer networks: real Fashion-MNIST photographs,
resized, repeated to three channels and normalized like torchvision's ImageNet models expect.
"""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(gray: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [n, h, w] grayscale -> [n, 3, size, size] float, ImageNet-normalized."""
    x = gray.to(torch.float32)[:, None] / 255.0
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x.repeat(1, 3, 1, 1) - mean) / std


def sample_photos(n: int, size: int = 224, seed: int = 0) -> torch.Tensor:
    """n Fashion-MNIST test images picked by the seed, as a torchvision model's input."""
    from pyioso.data import fashion_mnist

    images, _ = fashion_mnist("test")
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return normalize(images[pick], size)
