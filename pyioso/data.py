"""Fashion-MNIST, the real dataset available offline (Debian package dataset-fashion-mnist).

Read from the package's idx files; `make` installs the package when it is missing.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from pyioso.errors import PyiosoError

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _idx(path: Path) -> np.ndarray:
    """An idx file (big-endian header: magic with the dimension count, then the sizes)."""
    if not path.is_file():
        raise PyiosoError(f"Fashion-MNIST is missing ({path}): install it with "
                          "`apt-get install dataset-fashion-mnist` (make does this when run as root)")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise PyiosoError(f"{path} is truncated ({data.size} of {int(np.prod(shape))} bytes): "
                          "reinstall dataset-fashion-mnist")
    return data.reshape(shape)


def fashion_mnist(split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of the official split ('train' or 'test')."""
    if split not in _FILES:
        raise PyiosoError(f"split {split!r} does not exist: use 'train' or 'test'")
    images, labels = (_idx(FASHION_MNIST / name) for name in _FILES[split])
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
