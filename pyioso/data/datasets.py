"""Fashion-MNIST, the real dataset available offline (Debian package dataset-fashion-mnist).

Read from the package's idx files; `make` installs the package when it is missing.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import torch

from golden.errors import PyiosoError
from pyioso.data.images import normalize, standardize

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


FASHION = "fashion-mnist"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")


def _pick(count: int, n: int | None, seed: int) -> torch.Tensor:
    """The first n of a seeded permutation of range(count) (all of them, in order, for None)."""
    if n is None:
        return torch.arange(count)
    if not 0 < n <= count:
        raise PyiosoError(f"asked for {n} images but the data has {count}: use 1..{count}")
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:n]


def sample_photos(n: int, size: int = 224, seed: int = 0) -> torch.Tensor:
    """n Fashion-MNIST test images picked by the seed, as a torchvision model's input."""
    images, _ = fashion_mnist("test")
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return normalize(images[pick], size)


def calibration_images(n: int, size: int, seed: int) -> torch.Tensor:
    """n Fashion-MNIST *train* images picked by the seed, as a torchvision model's input."""
    images, _ = fashion_mnist("train")
    return normalize(images[_pick(len(images), n, seed)], size)


def labelled_images(source: str, split: str, size: int, n: int | None = None,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [n, 3, size, size] normalized, labels) from Fashion-MNIST ('fashion-mnist';
    split 'train' or 'test') or an ImageFolder directory (one sub-directory per class; for a
    directory with train/ and val/ inside, the split picks one: 'train' or 'val'/'test')."""
    if source == FASHION:
        images, labels = fashion_mnist(split)
        pick = _pick(len(images), n, seed)
        return normalize(images[pick], size), labels[pick]
    root = Path(source)
    if not root.is_dir():
        raise PyiosoError(f"data {source!r} is neither {FASHION!r} nor a directory: give an "
                          "ImageFolder directory (one sub-directory of images per class)")
    for name in ((split,) if split == "train" else ("val", "test")):
        if (root / name).is_dir():
            root = root / name
            break
    else:
        if split != "train":
            print(f"pyioso: warning: {source} has no val/ or test/ split: evaluating on the images "
                  "that calibration draws from (held-out accuracy needs DATA/train and DATA/val)",
                  file=sys.stderr)
    files, labels = image_folder(root)
    pick = _pick(len(files), n, seed)
    return torch.stack([_load_image(files[i], size) for i in pick.tolist()]), labels[pick]


def check_classes(source: str, classes: int) -> None:
    """Refuses an ImageFolder whose class folders (in train/ when it has one) are not `classes`
    in number, before any image is read: labels would index the wrong outputs."""
    if source == FASHION or not Path(source).is_dir():
        return
    root = Path(source) / "train" if (Path(source) / "train").is_dir() else Path(source)
    found = sum(1 for d in root.iterdir() if d.is_dir())
    if found != classes:
        raise PyiosoError(f"{root} holds {found} class folders but the network has --classes {classes}: "
                          f"give --classes {found}, or lay the data out as ROOT/<class>/<image>")


def image_folder(root: Path) -> tuple[list[Path], torch.Tensor]:
    """Files and class indices of an ImageFolder tree (classes in sorted order)."""
    classes = sorted(d for d in root.iterdir() if d.is_dir())
    files, labels = [], []
    for index, folder in enumerate(classes):
        for f in sorted(folder.rglob("*")):
            if f.suffix.lower() in _IMAGE_SUFFIXES:
                files.append(f)
                labels.append(index)
    if not files:
        raise PyiosoError(f"{root} holds no images in class sub-directories ({', '.join(_IMAGE_SUFFIXES)}): "
                          "lay it out as ROOT/<class>/<image>")
    return files, torch.tensor(labels, dtype=torch.int64)


def _load_image(path: Path, size: int) -> torch.Tensor:
    """The ImageNet evaluation transform: shorter side to size*256/224, center crop, normalize."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = round(size * 256 / 224) / min(image.size)
            image = image.resize((max(size, round(image.width * scale)),
                                  max(size, round(image.height * scale))), Image.BILINEAR)
            left, top = (image.width - size) // 2, (image.height - size) // 2
            image = image.crop((left, top, left + size, top + size))
            x = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1) / 255
    except (OSError, UnidentifiedImageError) as err:
        raise PyiosoError(f"cannot read image {path} ({err}): remove or replace it") from err
    return standardize(x)
