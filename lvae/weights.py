"""Weights files (results/NAME.pt): a trained model's config and weights, small enough for the repository.

A file holds only what `evaluate` and `sample` need, the config and the state dict (no optimizer,
RNG or logs), in the first of `FORMATS` that fits in `MAX_BYTES`, from the most faithful down:

    float32       exact
    float16       each weight to a relative 2^-11, cast back to float32 on load
    float16+xz    the same, xz-compressed: the paper-best ladder's 5.5 M weights take 10.5 MiB as
                  float16 and 9.1 MiB compressed (random weights; the trained `paper` ladder's
                  compress to 0.89 of float16, random ones to 0.86, which puts paper-best near 9.3 MiB)

Not bfloat16: its relative 2^-8 moved a tiny trained run's NLL by 0.13 nats (float16: within 0.02;
tests/test_weights.py). A model that does not fit even compressed is refused, not truncated.

`load_trained` reads a run folder or a weights file (or a run's checkpoint.pt), so every command
that scores or draws from a model takes either.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lvae import checkpoint as ckpt
from lvae.config import ConfigError, RunConfig, validate
from lvae.runfiles import DATA_ERRORS

MAX_BYTES = 10 * 2**20
FORMATS = ("float32", "float16", "float16+xz")


def encode(cfg: RunConfig, model: torch.nn.Module, fmt: str) -> bytes:
    """The bytes of a weights file in format `fmt` (one of `FORMATS`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown weights format {fmt!r}; choose one of {FORMATS}")
    dtype, _, codec = fmt.partition("+")
    # parameters in `dtype`; buffers (batch-norm statistics, a few KB) stay float32: a variance of 1e-4 in
    # float16 keeps 3 digits, and the normalisation divides by its root
    buffers = {name for name, _ in model.named_buffers()}
    sd = {k: v.detach().cpu().to(getattr(torch, dtype)) if v.is_floating_point() and k not in buffers else v.cpu()
          for k, v in model.state_dict().items()}
    return ckpt.encode({"config": json.loads(json.dumps(cfg.to_dict())), "model": sd, "dtype": dtype}, compress=codec == "xz")


def save_weights(cfg: RunConfig, model: torch.nn.Module, path: Path, max_bytes: int = MAX_BYTES,
                 formats: tuple[str, ...] = FORMATS) -> str:
    """Write the first of `formats` that fits in `max_bytes` to `path`; returns the format's name."""
    for fmt in formats:
        data = encode(cfg, model, fmt)
        if len(data) <= max_bytes:
            ckpt.write_atomic(path, lambda f: f.write(data))
            return fmt
    raise ckpt.CheckpointError(f"{path}: the weights take {len(data) / 2**20:.1f} MiB even as {fmt}, "
                               f"over the {max_bytes / 2**20:.1f} MiB a weights file may take")


def load_model(path: Path):
    """(RunConfig, model in eval mode, float32) from a weights file (or any checkpoint with a config and weights)."""
    from lvae.model import build_model

    sd = ckpt.load(path)
    try:
        cfg = RunConfig.from_dict(sd["config"])
        validate(cfg)  # a damaged size (a width of 10**12) is refused before a model is built from it
        model = build_model(cfg.model_kind, cfg.model)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd["model"].items()})
    except (ConfigError, *DATA_ERRORS, RuntimeError) as e:  # files older than the digest can be damaged unseen
        raise ckpt.CheckpointError(f"{path}: not a weights file that this version of lvae reads ({type(e).__name__}: "
                                   f"{ckpt.first_line(e)})") from None
    ckpt.non_finite_weights(sd["model"], path)
    return cfg, model.eval()


def load_trained(path: Path, device: str | torch.device = "cpu", epoch: int | None = None):
    """(RunConfig, model in eval mode) from a run folder (its latest checkpoint, or the weights it kept
    at the end of `epoch`) or from a weights file."""
    path = Path(path)
    if not path.is_file():
        return ckpt.load_run(path, device, epoch)
    if epoch is not None:
        raise ConfigError(f"--epoch picks among the weights a run folder kept; {path} is one weights file: "
                          f"pass the run folder, or leave out --epoch")
    cfg, model = load_model(path)
    return cfg, model.to(device)
