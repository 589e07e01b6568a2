"""The training loop: knows the objective and the run folder, not the model's insides.

A run folder holds
    config.json        the RunConfig
    history.jsonl      one line per iteration: loss, recon, KL per layer (bottom first), beta
    epochs.jsonl       one line per epoch: test ELBO terms (paper KL, beta = 1)
    checkpoint.pt      the latest checkpoint (plus the last few numbered ones)

Resuming is exact: beta is a function of the iteration, the data order a function of
(seed, epoch), and every RNG state is in the checkpoint.
"""

from __future__ import annotations

import json
import math
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from lvae import checkpoint as ckpt
from lvae.config import ConfigError, RunConfig, validate
from lvae.data import Split, binarize, fixed_binarization
from lvae.losses import LossTerms, compute_loss
from lvae.model import LadderVAE, build_model
from lvae.schedules import beta_at, lr_at
from lvae import distributed as dist_utils


class NonFiniteError(RuntimeError):
    """Training produced NaN or Inf; the message names the iteration, the term and a fix."""


class Interrupted(RuntimeError):
    """Ctrl-C during training: a checkpoint was saved; the message says how to resume."""


@dataclass
class TrainState:
    """Where the run is: the next iteration to run and its place in the epoch."""

    iteration: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


# ----------------------------------------------------------------------------- helpers


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this machine has no CUDA GPU; use --device cpu")
    return torch.device(name)


def model_inputs(x: torch.Tensor, likelihood: str, generator: torch.Generator | None) -> torch.Tensor:
    """What the model sees for a training batch: fresh binarization for Bernoulli models."""
    return binarize(x, generator) if likelihood == "bernoulli" else x


def evaluation_inputs(split: Split, likelihood: str) -> torch.Tensor:
    """The fixed test view: one seeded binarization for Bernoulli, else the raw intensities."""
    return fixed_binarization(split.images, seed=0) if likelihood == "bernoulli" else split.images


@torch.no_grad()
def test_elbo(model: LadderVAE, x_all: torch.Tensor, likelihood: str, output_variance: float = 0.5, batch_size: int = 1000) -> dict[str, Any]:
    """ELBO terms (paper KL, beta = 1) averaged over a whole split, in nats per image."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    recon, kls, n = 0.0, None, 0
    for i in range(0, len(x_all), batch_size):
        x = x_all[i : i + batch_size].to(device)
        terms = compute_loss(model(x), x, likelihood, beta=1.0, kl_mode="paper", output_variance=output_variance)
        b = len(x)
        recon += terms.recon.item() * b
        layer = [k.item() * b for k in terms.kl]
        kls = layer if kls is None else [a + c for a, c in zip(kls, layer)]
        n += b
    model.train(was_training)
    kl = [k / n for k in kls]
    return {"elbo": -(recon / n + sum(kl)), "recon": recon / n, "kl": kl}


def check_finite(terms: LossTerms, iteration: int, grad_norm: float | None = None) -> None:
    fix = "lower --lr, set grad_clip (--grad-clip 100), or raise model.var_floor"
    if not math.isfinite(terms.recon.item()):
        raise NonFiniteError(f"iteration {iteration}: the reconstruction term is {terms.recon.item()}; {fix}")
    for k, kl in enumerate(terms.kl):
        if not math.isfinite(kl.item()):
            raise NonFiniteError(f"iteration {iteration}: the KL of layer {k} (0 = bottom) is {kl.item()}; {fix}")
    if grad_norm is not None and not math.isfinite(grad_norm):
        raise NonFiniteError(f"iteration {iteration}: the gradient norm is {grad_norm}; {fix}")


@contextmanager
def sigint_flag() -> Iterator[dict[str, bool]]:
    """Turn Ctrl-C into a flag the loop checks between iterations (never mid-step)."""
    flag = {"stop": False}

    def handler(signum, frame):  # noqa: ARG001
        flag["stop"] = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    if rows:
        with open(path, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


def _truncate_jsonl(path: Path, key: str, limit: int) -> None:
    """Drop rows written after the checkpoint we resume from (rows with row[key] >= limit)."""
    if path.exists():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows if r[key] < limit))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def normalised_config(cfg: RunConfig) -> dict[str, Any]:
    """The config as JSON would give it back (tuples become lists), for saving and comparing."""
    return json.loads(json.dumps(cfg.to_dict()))


# ----------------------------------------------------------------------------- the loop


class Trainer:
    """Trains one run into `run_dir`; `fit()` can be called on a fresh or a resumed run."""

    def __init__(self, cfg: RunConfig, run_dir: Path, train_split: Split, test_split: Split, progress: bool = True):
        validate(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.dist = dist_utils.context(cfg.train.device)
        self.device = resolve_device(cfg.train.device) if not self.dist.enabled else self.dist.device
        t = cfg.train
        self.train_split = train_split.head(t.limit)
        if t.batch_size > len(self.train_split):
            raise ConfigError(f"batch size {t.batch_size} is larger than the data ({len(self.train_split)} images); lower --batch-size")
        if t.batch_size % self.dist.world_size:
            raise ConfigError(f"batch size {t.batch_size} must divide evenly over {self.dist.world_size} processes")
        self.test_x = evaluation_inputs(test_split, cfg.model.likelihood)
        torch.manual_seed(t.seed)
        self.model = build_model(cfg.model_kind, cfg.model).to(self.device)
        self.net = self.dist.wrap(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=t.lr)
        self.binarize_gen = torch.Generator().manual_seed(t.seed + 1 + self.dist.rank)
        self.sampler = DistributedSampler(
            range(len(self.train_split)), num_replicas=self.dist.world_size, rank=self.dist.rank,
            shuffle=True, seed=t.seed, drop_last=True,
        )
        self.local_batch = t.batch_size // self.dist.world_size
        self.iters_per_epoch = len(self.sampler) // self.local_batch
        self.total_iters = self.iters_per_epoch * t.epochs
        self.state = TrainState()

    # -------------------------------------------------------------- checkpointing

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": normalised_config(self.cfg),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": vars(self.state).copy(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "binarize": self.binarize_gen.get_state(),
            },
        }

    def load_state_dict(self, sd: dict[str, Any], path: Path) -> None:
        diffs = [d for d in ckpt.config_differences(sd["config"], normalised_config(self.cfg)) if not d.startswith("train.epochs")]
        if diffs:
            raise ckpt.CheckpointError(f"{path} was made with another configuration: " + "; ".join(diffs))
        self.model.load_state_dict(sd["model"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.state = TrainState(**sd["state"])
        torch.set_rng_state(sd["rng"]["torch"])
        if sd["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(sd["rng"]["cuda"])
        self.binarize_gen.set_state(sd["rng"]["binarize"])

    def resume(self) -> None:
        """Continue from the run folder's latest checkpoint, dropping log rows made after it."""
        path = self.run_dir / ckpt.LATEST
        self.load_state_dict(ckpt.load(path), path)
        if self.dist.is_main:
            _truncate_jsonl(self.run_dir / "history.jsonl", "iteration", self.state.iteration)
            _truncate_jsonl(self.run_dir / "epochs.jsonl", "epoch", self.state.epoch)

    def save(self, pending: list[dict[str, Any]]) -> None:
        """Flush the log rows, then write the checkpoint (rank 0 only)."""
        if self.dist.is_main:
            _append_jsonl(self.run_dir / "history.jsonl", pending)
            ckpt.save_rotating(self.state_dict(), self.run_dir, self.state.iteration, self.cfg.train.keep_checkpoints)
        pending.clear()

    # -------------------------------------------------------------- training

    def step(self, x: torch.Tensor) -> tuple[LossTerms, float]:
        cfg = self.cfg
        s = self.state
        beta = beta_at(cfg.objective.beta, s.iteration, s.epoch, self.total_iters, cfg.train.epochs)
        x = model_inputs(x, cfg.model.likelihood, self.binarize_gen).to(self.device, non_blocking=True)
        terms = compute_loss(self.net(x), x, cfg.model.likelihood, beta, cfg.objective.kl_mode, cfg.objective.free_bits, cfg.model.output_variance)
        check_finite(terms, s.iteration)
        self.optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        clip = cfg.train.grad_clip if cfg.train.grad_clip is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip).item()
        check_finite(terms, s.iteration, grad_norm)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(cfg.train, s.iteration, self.total_iters)
        self.optimizer.step()
        return terms, beta

    def fit(self) -> dict[str, Any]:
        """Train to the configured number of epochs; returns the last test ELBO terms."""
        cfg, s = self.cfg, self.state
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            cfg.save(self.run_dir / "config.json")
        self.model.train()
        pending: list[dict[str, Any]] = []
        last_eval: dict[str, Any] = {}
        images = self.train_split.images
        with sigint_flag() as interrupt:
            while s.epoch < cfg.train.epochs:
                self.sampler.set_epoch(s.epoch)
                order = torch.tensor(list(self.sampler))
                bar = tqdm(range(s.batch_in_epoch, self.iters_per_epoch), desc=f"epoch {s.epoch + 1}/{cfg.train.epochs}",
                           disable=not (self.progress and self.dist.is_main), leave=False)
                t0 = time.perf_counter()
                for b in bar:
                    idx = order[b * self.local_batch : (b + 1) * self.local_batch]
                    terms, beta = self.step(images[idx])
                    row = {"iteration": s.iteration, "epoch": s.epoch, "beta": beta, **terms.as_floats()}
                    pending.append(row)
                    s.iteration += 1
                    s.batch_in_epoch = b + 1
                    if s.iteration % 10 == 0:
                        bar.set_postfix(loss=f"{row['loss']:.1f}", beta=f"{beta:.3g}", kl=f"{sum(row['kl']):.1f}")
                    if s.iteration % cfg.train.checkpoint_every == 0:
                        self.save(pending)
                    if interrupt["stop"]:
                        self.save(pending)
                        raise Interrupted(f"interrupted at iteration {s.iteration}; checkpoint saved. "
                                          f"Resume with: python -m lvae train --resume {self.run_dir}")
                epoch_time = time.perf_counter() - t0
                if self.dist.is_main:
                    last_eval = test_elbo(self.model, self.test_x, cfg.model.likelihood, cfg.model.output_variance)
                    _append_jsonl(self.run_dir / "epochs.jsonl", [{"epoch": s.epoch, "seconds": epoch_time, **last_eval}])
                    if self.progress:
                        tqdm.write(f"epoch {s.epoch + 1}: test ELBO {last_eval['elbo']:.2f} nats "
                                   f"(recon {last_eval['recon']:.2f}, KL {[round(k, 2) for k in last_eval['kl']]}) in {epoch_time:.1f}s")
                s.epoch += 1
                s.batch_in_epoch = 0
        self.save(pending)
        return last_eval
