"""Data loading on fixture files the tests write; checksum and missing-data errors."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from lvae import data
from lvae.data import DataError, IDX_FILES, load_split, raw_dir
from conftest import write_tiny_dataset


def test_load_split_reads_the_cache_as_floats_in_unit_interval(tiny_data):
    s = load_split("mnist", "train", tiny_data)
    assert s.images.shape == (256, 1, 28, 28) and s.images.dtype == torch.float32
    assert 0 <= s.images.min() and s.images.max() <= 1 and s.labels.dtype == torch.int64
    assert len(load_split("mnist", "test", tiny_data)) == 64


def test_torchvision_reads_the_same_cache(tiny_data):
    from torchvision.datasets import MNIST

    ds = MNIST(str(tiny_data), train=True, download=False)
    ours = load_split("mnist", "train", tiny_data)
    assert len(ds) == len(ours) and ds[3][1] == ours.labels[3].item()


def test_missing_data_prints_the_fetch_command(tmp_path):
    with pytest.raises(DataError, match=r"python -m lvae data --dataset mnist --root"):
        load_split("mnist", "train", tmp_path / "nothing")


def test_truncated_idx_file_is_named(tiny_data):
    path = raw_dir("mnist", tiny_data) / IDX_FILES["test", "images"]
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated"):
        load_split("mnist", "test", tiny_data)


def _fake_pickle(path, seed=0):
    rng = np.random.default_rng(seed)
    part = lambda n: (rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, rng.integers(0, 10, n))  # noqa: E731
    with gzip.open(path, "wb") as f:
        pickle.dump((part(20), part(5), part(7)), f)
    return path


def test_pickle_conversion_recovers_uint8_and_joins_train_and_valid(tmp_path, monkeypatch):
    pkl = _fake_pickle(tmp_path / "mnist.pkl.gz")
    monkeypatch.setattr(data, "MNIST_PKL_SHA256", data.sha256_of(pkl))
    data.mnist_from_pickle(pkl, tmp_path / "cache")
    train = data.read_idx(raw_dir("mnist", tmp_path / "cache") / IDX_FILES["train", "images"])
    with gzip.open(pkl) as f:
        (xtr, _), (xva, _), _ = pickle.load(f)
    assert train.shape == (25, 28, 28)
    assert np.array_equal(train.reshape(25, -1), np.rint(np.concatenate([xtr, xva]) * 256).astype(np.uint8))


def test_checksum_mismatch_names_file_expected_and_actual(tmp_path):
    pkl = _fake_pickle(tmp_path / "mnist.pkl.gz")
    actual = data.sha256_of(pkl)
    with pytest.raises(DataError) as e:
        data.mnist_from_pickle(pkl, tmp_path / "cache")
    msg = str(e.value)
    assert str(pkl) in msg and data.MNIST_PKL_SHA256 in msg and actual in msg
    assert not (tmp_path / "cache").exists()


def test_a_users_differing_file_is_never_overwritten(tmp_path, monkeypatch):
    pkl = _fake_pickle(tmp_path / "mnist.pkl.gz")
    monkeypatch.setattr(data, "MNIST_PKL_SHA256", data.sha256_of(pkl))
    target = raw_dir("mnist", tmp_path) / IDX_FILES["train", "images"]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"my own file")
    with pytest.raises(DataError, match="not overwritten"):
        data.mnist_from_pickle(pkl, tmp_path)
    assert target.read_bytes() == b"my own file"


def test_fashion_from_debian_layout(tmp_path):
    src = tmp_path / "debian"
    write_tiny_dataset(tmp_path / "tmp", "mnist", 10, 4)
    src.mkdir()
    for name in IDX_FILES.values():
        with gzip.open(src / f"{name}.gz", "wb") as f:
            f.write((raw_dir("mnist", tmp_path / "tmp") / name).read_bytes())
    data.fashion_from_debian(src, tmp_path / "cache")
    assert len(load_split("fashion-mnist", "train", tmp_path / "cache")) == 10


def test_dynamic_binarization_is_fresh_and_fixed_binarization_is_repeatable():
    """Each pixel is Bernoulli(its intensity): the mean of the draws is the intensity, and two
    calls are independent draws (E[a b] = x^2, where a repeated draw would give x)."""
    n = 4000
    x = torch.linspace(0, 1, 28 * 28).reshape(1, 1, 28, 28).expand(n, 1, 28, 28)  # every intensity, n copies
    g = torch.Generator().manual_seed(0)
    a, b = data.binarize(x, g), data.binarize(x, g)
    assert set(a.unique().tolist()) <= {0.0, 1.0}

    def near(draws, p):  # the frequency of ones within five standard errors of p, pixel by pixel
        return ((draws.mean(0) - p).abs() <= 5 * (p * (1 - p) / n).sqrt() + 1e-6).all()

    assert near(a, x[0]) and near(a * b, x[0] ** 2)
    fixed = data.fixed_binarization(x, seed=3)
    assert torch.equal(fixed, data.fixed_binarization(x, seed=3)) and not torch.equal(fixed, data.fixed_binarization(x, seed=4))
    assert near(fixed, x[0])
