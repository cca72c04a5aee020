"""Input images: real Fashion-MNIST photographs, and deterministic synthetic ones.

`sample_photos` draws real test-split images for the layer cases (resized, repeated to three
channels, normalized like torchvision's ImageNet models). `synthetic_images` needs no data at
all:

smooth colour fields with soft-edged blobs and oriented gratings: image-like statistics (mostly
low frequencies, edges, correlated channels), so the activations a seeded network computes from
them are spread like real ones rather than like white noise. Normalized with the ImageNet mean
and standard deviation, as torchvision models expect.
"""

from __future__ import annotations

import math

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def synthetic_images(n: int, size: int = 224, seed: int = 0) -> torch.Tensor:
    """[n, 3, size, size] float32, normalized; the same (n, size, seed) gives the same tensor."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    images = []
    for _ in range(n):
        base = rand(3, 1, 1) * 0.6 + 0.2
        img = base + (rand(3, 1, 1) - 0.5) * 0.4 * xx + (rand(3, 1, 1) - 0.5) * 0.4 * yy
        for _ in range(6):                                   # soft blobs
            cy, cx, r = rand(3) * torch.tensor([1.0, 1.0, 0.25]) + torch.tensor([0, 0, 0.05])
            mask = torch.sigmoid((r - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()) * 60)
            img = img * (1 - mask) + (rand(3, 1, 1)) * mask
        angle, freq = rand(1) * math.pi, 4 + rand(1) * 20   # an oriented grating
        img = img + 0.1 * torch.sin(freq * (xx * angle.cos() + yy * angle.sin()) * 2 * math.pi)
        images.append(img.clamp(0, 1))
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (torch.stack(images) - mean) / std


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
