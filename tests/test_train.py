"""pyioso train: deterministic, resumable, cached; on a 256-image slice so it runs in seconds."""

import json

import pytest
import torch

from golden.errors import PyiosoError
from pyioso.models import train
from pyioso.models.weights import load_model


@pytest.fixture()
def small(monkeypatch, tmp_path):
    """A small slice of Fashion-MNIST and a cache of its own."""
    full = {split: train.fashion_mnist(split) for split in ("train", "test")}
    monkeypatch.setattr(train, "fashion_mnist", lambda split: tuple(t[:256] for t in full[split]))
    monkeypatch.setenv("PYIOSO_CACHE", str(tmp_path / "cache"))
    return train.Recipe("resnet18", size=16, epochs=2, batch=64)


def _weights(path):
    return torch.load(path, weights_only=True)


def test_training_is_deterministic_and_recorded(small, tmp_path, monkeypatch):
    path, record = train.train(small, progress=False)
    assert path.parent == tmp_path / "cache" / "checkpoints"
    assert record["epochs"] == 2 and record["seed"] == 0 and 0 <= record["top1"] <= 100
    assert json.loads(path.with_suffix(".json").read_text())["sha256"] == record["sha256"]
    first = path.read_bytes()
    # The finished checkpoint is reused (nothing is trained again) ...
    with monkeypatch.context() as m:
        m.setattr(train.tv, "build_model", lambda *a, **k: pytest.fail("trained again"))
        assert train.train(small, progress=False)[0] == path
    # ... and a fresh cache trains the same bytes again.
    monkeypatch.setenv("PYIOSO_CACHE", str(tmp_path / "other"))
    again, _ = train.train(small, progress=False)
    assert again != path and again.read_bytes() == first
    # It is a state_dict load_model takes.
    assert load_model("resnet18", str(path), 10).fc.out_features == 10


def test_interrupted_training_resumes_to_the_same_weights(small, tmp_path, monkeypatch):
    reference, _ = train.train(small, progress=False)
    expected = _weights(reference)
    monkeypatch.setenv("PYIOSO_CACHE", str(tmp_path / "interrupted"))
    write = train.output.atomic_write

    def stop_after_first_epoch(path, fn):
        write(path, fn)
        raise KeyboardInterrupt

    monkeypatch.setattr(train.output, "atomic_write", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train.train(small, progress=False)
    monkeypatch.setattr(train.output, "atomic_write", write)
    assert (train.cache_dir() / f"{small.stem()}.partial.pt").is_file()
    resumed, _ = train.train(small, progress=False)
    assert not (train.cache_dir() / f"{small.stem()}.partial.pt").exists()
    got = _weights(resumed)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_corrupt_checkpoint_and_bad_recipes_are_refused(small):
    path, _ = train.train(small, progress=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(PyiosoError, match="corrupt"):
        train.train(small, progress=False)
    with pytest.raises(PyiosoError, match="unknown network"):
        train.Recipe("vgg99").check()
    with pytest.raises(PyiosoError, match="--size"):
        train.Recipe("resnet18", size=8).check()


def test_a_published_checkpoint_wins_over_training_and_the_cache(small, tmp_path, monkeypatch):
    """The checkpoint git publishes is the recipe's on every machine (training differs per CPU
    model); an edited one is refused, naming how to restore it."""
    trained, record = train.train(small, progress=False)
    published = tmp_path / "published"
    published.mkdir()
    torch.save({"marker": torch.ones(1)}, published / trained.name)
    mine = {**record, "sha256": train.sha256(published / trained.name)}
    (published / f"{small.stem()}.json").write_text(json.dumps(mine))
    monkeypatch.setattr(train, "PUBLISHED", published)
    monkeypatch.setattr(train.tv, "build_model", lambda *a, **k: pytest.fail("trained again"))
    assert train.train(small, progress=False) == (published / trained.name, mine)
    monkeypatch.setenv("PYIOSO_CACHE", str(tmp_path / "empty"))
    assert train.cached(small) == (published / trained.name, mine)
    (published / trained.name).write_bytes(trained.read_bytes())
    with pytest.raises(PyiosoError, match="git checkout -- pyioso/models/checkpoints"):
        train.cached(small)


def test_batchnorm_statistics_follow_the_training_in_every_network(small, monkeypatch):
    """torchvision's MnasNet keeps BN statistics with momentum 0.0003; the recipe's few thousand
    steps need torch's 0.1, or evaluation runs on statistics still near their initial values."""
    built = []
    build = train.tv.build_model
    monkeypatch.setattr(train.tv, "build_model", lambda *a, **k: built.append(build(*a, **k)) or built[-1])
    train.train(train.Recipe("mnasnet1_0", size=16, epochs=1, batch=64), progress=False)
    norms = [m for m in built[0].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == train.BN_MOMENTUM for m in norms)
    # After 4 steps at momentum 0.1 the first BN's running variance has left its initial 1.
    assert not torch.allclose(norms[0].running_var, torch.ones_like(norms[0].running_var), atol=0.05)
