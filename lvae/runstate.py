"""A training run's state on disk and how it stops: checkpoints, exact resume, RNG state, signals, full disks.

A run folder holds
    config.json        the RunConfig
    history.jsonl      one line per iteration: loss, recon, KL per layer (bottom first), beta, grad norm
    epochs.jsonl       one line per epoch: train ELBO, CPU seconds; test ELBO terms (paper KL, beta = 1) and
                       test KL per unit where the test pass ran (`train.test_every`: its own noise, so
                       thinning it never changes what the run learns)
    checkpoint.pt      the latest checkpoint, plus the last `keep_checkpoints` numbered ones

`lvae.training.Trainer` is the loop; this module is everything a run needs besides it. The
loop calls `RunState`'s methods (its base class) at a few points: `write_config` when it
starts, `check_finite` after each backward pass, `save` every `checkpoint_every` iterations,
`log_epoch` and `keep_epoch_weights` at the end of an epoch, `interrupted` when a signal
came; `resume` is called by whoever starts it again. The locking of the run folder (one
writer at a time) lives in `lvae.runlock`, the atomic writes in `lvae.checkpoint`.

Resuming is exact: beta is a function of the iteration, the data order a function of
(seed, epoch), and the model, the optimizer and every RNG state (one set per rank) are in
the checkpoint; the learning rate, like beta, is a pure function of the iteration
(`lr_at`). Log rows written after the checkpoint are dropped on resume.

Schedules that span the run (a cosine lr, a warm-up with `steps=None`) are laid out over
the horizon the run fixed when it started (`train.schedule_epochs`, in config.json and every
checkpoint), so a resume with another `--epochs` only moves where training stops: the rates
and betas already used are never rewritten.

Ctrl-C and SIGTERM become a flag the loop checks between iterations (`stop_signals`); under
torchrun every decision to stop (a signal, NaN) is taken from all-reduced values so the ranks
stop together, and every error says where the run can resume from.
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import statistics
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from lvae import checkpoint as ckpt
from lvae.config import ConfigError, RunConfig
from lvae.runfiles import read_jsonl
from lvae.settings import validate
from lvae.schedules import horizon_schedules

# Fields a resumed run may change; anything else must match the checkpoint. Changing one
# of them (other than epochs, checkpoint_every, keep_checkpoints) ends bit-for-bit repeatability.
RESUMABLE_FIELDS = frozenset({
    "train.epochs", "train.lr", "train.grad_clip", "train.checkpoint_every", "train.test_every", "train.keep_checkpoints",
    "train.device", "train.amp", "train.compile", "train.keep_epochs",
})


class NonFiniteError(RuntimeError):
    """Training produced NaN or Inf; the message names the iteration, the term and a fix."""


class Interrupted(RuntimeError):
    """Ctrl-C (or SIGTERM) during training: a checkpoint was saved; the message says how to resume."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class TrainState:
    """Where the run is: the next iteration to run and its place in the epoch."""

    iteration: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    epoch_elbo_sum: float = 0.0  # training-batch ELBOs of this epoch so far (the epoch's train ELBO)


# ----------------------------------------------------------------------------- helpers


def resolve_device(name: str) -> torch.device:
    """The torch.device for `name`, refusing what this machine cannot run."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but this machine has no CUDA GPU; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name!r} asked for, but this machine has {count} GPU(s): cuda:0 .. cuda:{count - 1}")
    return device


def first_non_finite(row: dict[str, Any], grad_norm: float) -> str | None:
    """Which logged term (or the gradient) is NaN/Inf, in words; None if all are finite."""
    if not math.isfinite(row["recon"]):
        return f"the reconstruction term is {row['recon']}"
    for k, kl in enumerate(row["kl"]):
        if not math.isfinite(kl):
            return f"the KL of layer {k} (0 = bottom) is {kl}"
    if not math.isfinite(grad_norm):
        return f"the gradient norm is {grad_norm}"
    return None


def first_non_finite_gradient(model: torch.nn.Module) -> str | None:
    for name, p in model.named_parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            return name
    return None


@contextmanager
def stop_signals() -> Iterator[dict[str, int | None]]:
    """Turn Ctrl-C and SIGTERM into a flag the loop checks between iterations (never mid-step)."""
    flag: dict[str, int | None] = {"signum": None}

    def handler(signum, frame):  # noqa: ARG001
        flag["signum"] = signum

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave the signals alone
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append whole lines in one write; a reader (evaluate, figures) drops a torn last line."""
    if not rows:
        return
    text = "".join(json.dumps(r) + "\n" for r in rows)
    try:
        with open(path, "a") as f:
            f.write(text)
    except OSError as e:
        if e.errno in ckpt.NO_SPACE:
            raise ckpt.disk_full(path, len(text.encode())) from None
        raise ckpt.CheckpointError(f"could not write {path}: {e.strerror or e}") from None


def truncate_jsonl(path: Path, key: str, limit: int) -> None:
    """Drop rows written after the checkpoint we resume from (rows with row[key] >= limit)."""
    if path.exists():
        keep = [r for r in read_jsonl(path) if r[key] < limit]
        ckpt.write_atomic(path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in keep).encode()))


def normalised_config(cfg: RunConfig) -> dict[str, Any]:
    """The config as JSON would give it back (tuples become lists), for saving and comparing.

    The schedules' horizon is filled in (`train.horizon`): a config that has not fixed it yet
    means its own `epochs`, and compares equal to a run that fixed it there.
    """
    d = json.loads(json.dumps(cfg.to_dict()))
    d["train"]["schedule_epochs"] = cfg.train.horizon
    return d


def _short(value: Any, n: int = 80) -> str:
    r = repr(value)
    return r if len(r) <= n else r[: n - 3] + "..."


def data_fingerprint(images: torch.Tensor) -> str:
    """sha256 of the training images as trained on (after --limit): a resumed run must see the same data."""
    return hashlib.sha256(memoryview(images.contiguous().numpy()).cast("B")).hexdigest()


# ----------------------------------------------------------------------------- the trainer's run state


class RunState:
    """The run-state half of `lvae.training.Trainer` (its base class): checkpoints, resume, RNG, stop and error messages.

    It reads the trainer's `cfg`, `run_dir`, `dist`, `device`, `model`, `ema`, `eval_model`, `optimizer`,
    `binarize_gen`, `data` (the training images' fingerprint), `state` (a `TrainState`), `pending` (the
    iterations' log rows not yet in history.jsonl), `last_saved` (the iteration of the newest checkpoint
    on disk) and `recent_grad_norms`.
    """

    # -------------------------------------------------------------- RNG and checkpoints

    def rng_state(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device).cpu() if self.device.type == "cuda" else None,
            "binarize": self.binarize_gen.get_state(),
        }

    def set_rng_state(self, per_rank: list[dict[str, Any]] | dict[str, Any], path: Path) -> None:
        per_rank = per_rank if isinstance(per_rank, list) else [per_rank]
        if len(per_rank) != self.dist.world_size and self.dist.is_main:
            print(f"note: {path} was written by {len(per_rank)} process(es) and this run has {self.dist.world_size}; "
                  f"ranks without a saved state draw fresh noise, so the run will not repeat bit for bit", file=sys.stderr)
        if self.dist.rank >= len(per_rank):
            torch.manual_seed(self.cfg.train.seed + 1_000_003 * self.dist.rank + self.state.iteration)
            self.binarize_gen.manual_seed(self.cfg.train.seed + 1 + self.dist.rank + self.state.iteration)
            return
        rng = per_rank[self.dist.rank]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.binarize_gen.set_state(rng["binarize"])

    def state_dict(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        sd = {
            "config": normalised_config(self.cfg),
            "model": self.eval_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": vars(self.state).copy(),
            "rng": rng,
            "data": self.data,
        }
        if self.ema is not None:
            sd.update(raw_model=self.model.state_dict(), ema={"n_averaged": self.ema.n_averaged.cpu()})
        return sd

    def load_state_dict(self, sd: dict[str, Any], path: Path) -> None:
        """Restore a checkpoint, refusing one made with another configuration."""
        missing = {"config", "model", "optimizer", "state", "rng"} - set(sd)
        if missing:
            raise ckpt.CheckpointError(f"{path}: not an lvae training checkpoint (no {', '.join(sorted(missing))})")
        try:
            saved_cfg = RunConfig.from_dict(sd["config"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ckpt.CheckpointError(f"{path}: its config is not one this version of lvae reads ({type(e).__name__}: {e})") from None
        if self.cfg.train.schedule_epochs is None:  # keep the horizon the run started with (older runs: the checkpoint's epochs)
            self.cfg.train.schedule_epochs = saved_cfg.train.horizon
        saved = normalised_config(saved_cfg)
        diffs = {k: v for k, v in ckpt.config_differences(saved, normalised_config(self.cfg)).items() if k not in RESUMABLE_FIELDS}
        if diffs:
            fields = "; ".join(f"{k}: checkpoint {_short(a)}, this run {_short(b)}" for k, (a, b) in diffs.items())
            raise ckpt.CheckpointError(f"{path} was made with another configuration; differing fields: {fields}")
        data = sd.get("data")  # absent in checkpoints older than this check
        if data is not None and not (isinstance(data, dict) and {"images", "sha256"} <= data.keys()):
            raise ckpt.CheckpointError(f"{path}: not an lvae training checkpoint (damaged data entry {_short(data)})")
        if data and (data["images"], data["sha256"]) != (self.data["images"], self.data["sha256"]):
            where = f" from {data['root']}" if data.get("root") else ""
            raise ckpt.CheckpointError(f"{path} was trained on other data ({data['images']} images{where}, sha256 {data['sha256'][:12]}); "
                                       f"this run loaded {self.data['images']} images (sha256 {self.data['sha256'][:12]}) from {self.data['root']}; "
                                       f"pass the original --data-root")
        try:
            if self.ema is not None:
                self.model.load_state_dict(sd["raw_model"])
                self.ema.module.load_state_dict(sd["model"])
                self.ema.n_averaged.copy_(sd["ema"]["n_averaged"])
            else:
                self.model.load_state_dict(sd["model"])
            self.optimizer.load_state_dict(sd["optimizer"])
            self.state = TrainState(**sd["state"])
            self.set_rng_state(sd["rng"], path)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ckpt.CheckpointError(f"{path}: does not fit this model and optimizer: {first}") from None
        self.last_saved = self.state.iteration

    def resume(self) -> None:
        """Continue from the run folder's latest checkpoint, dropping log rows made after it."""
        path = self.run_dir / ckpt.LATEST
        if not path.is_file():
            raise ckpt.CheckpointError(f"{path}: no checkpoint yet (the run stopped before its first one); "
                                       f"start it again with --out {self.run_dir} --overwrite")
        self.load_state_dict(ckpt.load(path, map_location="cpu"), path)
        validate(self.cfg)  # again: the horizon may have come from the checkpoint
        if self.state.epoch >= self.cfg.train.epochs:
            raise ConfigError(f"{self.run_dir} has already trained {self.state.epoch} epoch(s); "
                              f"to train further, pass --epochs N with N > {self.state.epoch}")
        if self.dist.is_main:
            self.note_horizon()
            with self.resumable():
                truncate_jsonl(self.run_dir / "history.jsonl", "iteration", self.state.iteration)
                truncate_jsonl(self.run_dir / "epochs.jsonl", "epoch", self.state.epoch)

    def note_horizon(self) -> None:
        """Say so when a resumed run stops elsewhere than the horizon its schedules span."""
        t, names = self.cfg.train, horizon_schedules(self.cfg)
        if names and t.epochs != t.horizon:
            after = f"they hold their final values after epoch {t.horizon}" if t.epochs > t.horizon else "training stops before they end"
            print(f"note: this run keeps the {t.horizon}-epoch horizon it started with for {' and '.join(names)}; "
                  f"it now trains {t.epochs} epochs, so {after}", file=sys.stderr)

    # -------------------------------------------------------------- run files

    def write_config(self) -> None:
        """config.json, with the horizon the run has fixed (rank 0)."""
        if self.dist.is_main:
            with self.resumable():
                ckpt.write_atomic(self.run_dir / "config.json", lambda f: f.write((json.dumps(self.cfg.to_dict(), indent=2) + "\n").encode()))

    def log_epoch(self, row: dict[str, Any]) -> None:
        with self.resumable():
            append_jsonl(self.run_dir / "epochs.jsonl", [row])

    def save(self) -> None:
        """Flush the pending log rows, then write the checkpoint (rank 0 writes; every rank gives its RNG)."""
        bad = next((name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()), None)
        if bad is not None:  # identical on every rank: the parameters are
            raise self.non_finite(f"parameter {bad} is no longer finite")
        rng = self.dist.gather(self.rng_state())
        error: ckpt.CheckpointError | None = None
        if self.dist.is_main:
            try:
                append_jsonl(self.run_dir / "history.jsonl", self.pending)
                ckpt.save_rotating(self.state_dict(rng), self.run_dir, self.state.iteration, self.cfg.train.keep_checkpoints)
            except ckpt.CheckpointError as e:
                error = e
        if self.dist.any(error is not None):  # a DiskFullError stays one: the command's exit code says "disk full"
            kind = type(error) if error is not None else ckpt.CheckpointError
            raise kind(f"{error or 'rank 0 could not write a checkpoint'}; {self.where_to_resume()}")
        self.last_saved = self.state.iteration
        self.pending.clear()

    def keep_epoch_weights(self) -> None:
        """The weights (with their config) at the end of this epoch, for scoring the run at this budget."""
        path = ckpt.epoch_weights(self.run_dir, self.state.epoch)
        try:
            with self.resumable():
                ckpt.save_atomic({"config": normalised_config(self.cfg), "model": self.eval_model.state_dict(),
                                  "epoch": self.state.epoch, "iteration": self.state.iteration}, path)
        except OSError as e:
            raise ckpt.CheckpointError(f"could not write {path}: {e.strerror or e}; {self.where_to_resume()}") from None

    @contextmanager
    def resumable(self) -> Iterator[None]:
        """A full disk while writing a run file (not a checkpoint) also says where the run can resume from."""
        try:
            yield
        except ckpt.DiskFullError as e:
            raise ckpt.DiskFullError(f"{e}; {self.where_to_resume()}") from None

    # -------------------------------------------------------------- stopping

    def resume_command(self, extra: str = "") -> str:
        launcher = f"torchrun --nproc_per_node {self.dist.world_size}" if self.dist.enabled else "python"
        return f"{launcher} -m lvae train --resume {self.run_dir}{extra}"

    def where_to_resume(self, extra: str = "") -> str:
        if self.last_saved is None:
            return f"no checkpoint was written yet; start again with: python -m lvae train ... --out {self.run_dir} --overwrite{extra}"
        return (f"the last good checkpoint {self.run_dir / ckpt.LATEST} (iteration {self.last_saved}) is intact; "
                f"resume with: {self.resume_command(extra)}")

    def check_finite(self, row: dict[str, Any]) -> None:
        """Stop before the optimizer step if a logged term or the gradient is NaN/Inf (the rows so far are flushed
        to help diagnose it; resume drops them); else remember the gradient norm for the next message's fix."""
        problem = first_non_finite(row, row["grad_norm"])
        if problem is not None:
            if problem.startswith("the gradient"):  # the gradients are still unclipped when the norm is not finite
                problem += f" (first non-finite gradient: {first_non_finite_gradient(self.model)})"
            if self.dist.is_main:
                append_jsonl(self.run_dir / "history.jsonl", self.pending)
            raise self.non_finite(problem)
        self.recent_grad_norms.append(row["grad_norm"])

    def non_finite(self, problem: str) -> NonFiniteError:
        t = self.cfg.train
        typical = statistics.median(self.recent_grad_norms) if self.recent_grad_norms else None
        clip = t.grad_clip / 10 if t.grad_clip is not None else (2 * typical if typical and math.isfinite(typical) else 100.0)
        fix = f" --lr {t.lr / 10:g} --grad-clip {clip:.3g}"
        return NonFiniteError(f"iteration {self.state.iteration}: {problem}; training stopped before this step changed the model. "
                              f"Lower the learning rate or clip the gradients: {self.where_to_resume(fix)}")

    def interrupted(self, signum: int) -> None:
        """Tell the user how to resume (rank 0), then raise Interrupted on every rank.

        Under torchrun the other ranks wait for rank 0's message: torchrun stops rank 0 as
        soon as any rank exits.
        """
        error = Interrupted(f"{signal.Signals(signum).name} at iteration {self.state.iteration}: checkpoint saved in "
                           f"{self.run_dir / ckpt.LATEST}. Resume with: {self.resume_command()}", 128 + signum)
        if self.dist.is_main:
            print(error, file=sys.stderr, flush=True)
        self.dist.any(False)
        raise error
