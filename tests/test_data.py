"""Fashion-MNIST reading and the photo sampler of the layer cases."""

import gzip

import pytest
import torch

from golden.errors import PyiosoError
from pyioso.data import datasets
from pyioso.data.datasets import sample_photos


def test_official_test_split():
    images, labels = datasets.fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert sorted(labels.unique().tolist()) == list(range(10))
    assert (labels.bincount() == 1000).all()


def test_sample_photos_are_seeded_and_normalized():
    a, b = sample_photos(4, size=32, seed=3), sample_photos(4, size=32, seed=3)
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b)
    assert not torch.equal(a, sample_photos(4, size=32, seed=4))
    assert torch.allclose(a[:, 0] * 0.229 + 0.485, a[:, 1] * 0.224 + 0.456, atol=1e-6)   # gray


def test_missing_dataset_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST", tmp_path)
    with pytest.raises(PyiosoError, match="apt-get install dataset-fashion-mnist"):
        datasets.fashion_mnist("test")


def test_truncated_file_is_refused(tmp_path, monkeypatch):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + bytes(10))
    monkeypatch.setattr(datasets, "FASHION_MNIST", tmp_path)
    with pytest.raises(PyiosoError, match="truncated"):
        datasets.fashion_mnist("test")


def test_unknown_split():
    with pytest.raises(PyiosoError, match="use 'train' or 'test'"):
        datasets.fashion_mnist("validation")


def test_a_folder_without_a_held_out_split_says_so(tmp_path, capsys):
    """Issue 26: an ImageFolder without val/ was evaluated on the calibration images silently."""
    from PIL import Image
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (20, 24), (10, 200, 30)).save(tmp_path / name / "a.png")
    x, labels = datasets.labelled_images(str(tmp_path), "test", 16)
    assert x.shape == (2, 3, 16, 16) and sorted(labels.tolist()) == [0, 1]
    assert "has no val/ or test/ split" in capsys.readouterr().err
    datasets.labelled_images(str(tmp_path), "train", 16)
    assert capsys.readouterr().err == ""


def test_class_folders_must_match_the_classes(tmp_path):
    """Issue 25: nothing checked the number of class folders against --classes."""
    for name in ("cat", "dog", "eel"):
        (tmp_path / "train" / name).mkdir(parents=True)
    datasets.check_classes(str(tmp_path), 3)
    datasets.check_classes(datasets.FASHION, 10)
    with pytest.raises(PyiosoError, match="holds 3 class folders but the network has --classes 10: give --classes 3"):
        datasets.check_classes(str(tmp_path), 10)
