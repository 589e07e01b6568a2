"""Checkpoints: written atomically, loaded safely, checked against the run's config.

A checkpoint is a dict of tensors and plain Python values, so it loads with
`torch.load(weights_only=True)`: a file from elsewhere cannot run code.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_GLOB = "checkpoint-*.pt"
LATEST = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without unpickling code; a bad file gives one clear line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a usable checkpoint (truncated, corrupt or not made by lvae): {first[:200]}") from None


def save_rotating(obj: Any, run_dir: Path, iteration: int, keep: int) -> Path:
    """Write `checkpoint-<iteration>.pt` and `checkpoint.pt`, keeping the last `keep` numbered ones."""
    run_dir = Path(run_dir)
    numbered = run_dir / f"checkpoint-{iteration:08d}.pt"
    save_atomic(obj, numbered)
    save_atomic(obj, run_dir / LATEST)
    for old in sorted(run_dir.glob(CHECKPOINT_GLOB))[:-keep]:
        old.unlink()
    return numbered


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields where two config dicts differ."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<missing>"), current.get(key, "<missing>")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_differences(a, b, name + ".")
        elif a != b:
            diffs.append(f"{name}: checkpoint has {a!r}, this run has {b!r}")
    return diffs


def load_run(run_dir: Path, device: str | torch.device = "cpu"):
    """(RunConfig, model in eval mode) from a run folder's config.json and latest checkpoint."""
    from lvae.config import RunConfig
    from lvae.model import build_model

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise CheckpointError(f"{run_dir}: not a run folder (no config.json); train one with: python -m lvae train --out {run_dir}")
    cfg = RunConfig.load(run_dir / "config.json")
    sd = load(run_dir / LATEST, map_location=device)
    model = build_model(cfg.model_kind, cfg.model).to(device)
    try:
        model.load_state_dict(sd["model"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"{run_dir / LATEST}: does not match {run_dir / 'config.json'}: {str(e).splitlines()[0][:200]}") from None
    return cfg, model.eval()
