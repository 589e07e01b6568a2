"""Shared fixtures: tiny IDX data sets the tests write themselves (no network, no full MNIST)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lvae.config import LayerSpec, ModelConfig

HOOKS = Path(__file__).resolve().parent / "hooks"  # test-only code the package never imports
sys.path.insert(0, str(HOOKS))
from lvae.data import IDX_FILES, raw_dir, synthetic_split, write_idx


def write_tiny_dataset(root: Path, dataset: str = "mnist", n_train: int = 256, n_test: int = 64) -> Path:
    """Synthetic digit-like images in the cache layout `lvae.data` and torchvision read."""
    out = raw_dir(dataset, root)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        s = synthetic_split(n, seed)
        write_idx(out / IDX_FILES[split, "images"], (s.images.squeeze(1).numpy() * 255).round().astype(np.uint8))
        write_idx(out / IDX_FILES[split, "labels"], s.labels.numpy().astype(np.uint8))
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "data")


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)


def dense_config(depth: int, likelihood: str = "bernoulli", batch_norm: bool = False) -> ModelConfig:
    widths, latents = [64, 48, 32, 24, 16][:depth], [16, 12, 8, 6, 4][:depth]
    return ModelConfig([LayerSpec("dense", (w,), z) for w, z in zip(widths, latents)], likelihood=likelihood, batch_norm=batch_norm)


def conv_config(depth: int, likelihood: str = "gaussian") -> ModelConfig:
    """One conv rung (spatial latent), the rest dense: the seed's shape at any depth."""
    layers = [LayerSpec("conv", (8, 16), 4)] + [LayerSpec("dense", (32,), 8) for _ in range(depth - 1)]
    return ModelConfig(layers, likelihood=likelihood)


def run_lvae(*args, env: dict[str, str] | None = None, launcher: tuple[str, ...] = ("-m", "lvae"), timeout: float = 120):
    """`python -m lvae ARGS` in a fresh process (one thread, so runs repeat bit for bit); returns CompletedProcess."""
    import os
    import subprocess
    import sys

    # tests/hooks on the path: its sitecustomize installs the signal hook where LVAE_TEST_SIGNAL_AT asks for it
    paths = [str(HOOKS), *filter(None, [os.environ.get("PYTHONPATH")])]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(paths), **(env or {})}
    return subprocess.run([sys.executable, *launcher, *map(str, args)], env=full_env, capture_output=True, text=True, timeout=timeout)


def checkout_first_pythonpath() -> str:
    """PYTHONPATH for a kernel started outside the repository root (in notebooks/, in a temporary folder).

    There the interpreter's own lvae may be another checkout's (an editable install elsewhere);
    this puts the checkout under test first.
    """
    import os

    root = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
