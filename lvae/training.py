"""The training loop: knows the objective and the run folder, not the model's insides.

A run folder holds
    config.json        the RunConfig
    history.jsonl      one line per iteration: loss, recon, KL per layer (bottom first), beta, grad norm
    epochs.jsonl       one line per epoch: train ELBO, CPU seconds; test ELBO terms (paper KL, beta = 1) and
                       test KL per unit where the test pass ran (`train.test_every`: its own noise, so
                       thinning it never changes what the run learns)
    checkpoint.pt      the latest checkpoint, plus the last `keep_checkpoints` numbered ones

Resuming is exact: beta is a function of the iteration, the data order a function of
(seed, epoch), and the model, the optimizer and every RNG state (one set per rank) are in
the checkpoint; the learning rate, like beta, is a pure function of the iteration
(`lr_at`). Log rows written after the checkpoint are dropped on resume.

With `train.ema_decay` the run also keeps an exponential moving average of the weights
(torch.optim.swa_utils.AveragedModel, batch-norm buffers averaged too), updated after every
optimizer step: the test ELBO of each epoch, the kept epoch weights and the checkpoint's
"model" are the average's, so everything that reads a run scores the average; the weights
training continues from are saved beside them as "raw_model", with the average's step count.
With `train.bn_recompute` too, the batch-norm statistics are recomputed on the average (whose
averaged running statistics belong to no one set of weights) before each test evaluation.

Schedules that span the run (a cosine lr, a warm-up with `steps=None`) are laid out over
the horizon the run fixed when it started (`train.schedule_epochs`, in config.json and every
checkpoint), so a resume with another `--epochs` only moves where training stops: the rates
and betas already used are never rewritten.

Under torchrun every rank runs this loop on its share of each global batch; logged values
are means over ranks, and every decision to stop (Ctrl-C, NaN) is taken from all-reduced
values so the ranks stop together.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import signal
import statistics
import sys
import time
from collections import deque
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data.distributed import DistributedSampler

from lvae import checkpoint as ckpt
from lvae import distributed as dist_utils
from lvae.batchnorm import recompute_batch_norm
from lvae.config import ConfigError, RunConfig, validate
from lvae.data import Split, binarize, fixed_binarization
from lvae.latents import noise_from
from lvae.losses import kl_per_unit, log_likelihood, objective_loss
from lvae.model import HierarchicalModel, build_model, use_fast_layout
from lvae.progress import print_line, progress_bar
from lvae.runfiles import read_jsonl  # noqa: F401 - the logs' reader, imported from here by runs, results and paper
from lvae.schedules import beta_at, horizon_schedules, lr_at

# Fields a resumed run may change; anything else must match the checkpoint. Changing one
# of them (other than epochs, checkpoint_every, keep_checkpoints) ends bit-for-bit repeatability.
cpu_clock = time.process_time  # CPU seconds of this process, every thread (a test replaces it)

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


def model_inputs(x: torch.Tensor, likelihood: str, generator: torch.Generator | None) -> torch.Tensor:
    """What the model sees for a training batch: fresh binarization for Bernoulli models."""
    return binarize(x, generator) if likelihood == "bernoulli" else x


def evaluation_inputs(split: Split, likelihood: str) -> torch.Tensor:
    """The fixed test view: one seeded binarization for Bernoulli, else the raw intensities."""
    return fixed_binarization(split.images, seed=0) if likelihood == "bernoulli" else split.images


@torch.no_grad()
def split_elbo(model: HierarchicalModel, x_all: torch.Tensor, likelihood: str, output_variance: float = 0.5,
               batch_size: int = 1000) -> dict[str, Any]:
    """ELBO terms (paper KL, beta = 1) averaged over a whole split, in nats per image.

    `kl` is per stochastic layer (bottom first); `kl_units` the same KL unit by unit
    (flattened), which shows where units switch off.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    recon, units, n = 0.0, None, 0
    for i in range(0, len(x_all), batch_size):
        x = x_all[i : i + batch_size].to(device)
        out = model(x)
        recon += -log_likelihood(out.x_logits, x, likelihood, output_variance).sum().item()
        per_unit = [kl_per_unit(layer).flatten(1).sum(0).double().cpu() for layer in out.latents]
        units = per_unit if units is None else [a + b for a, b in zip(units, per_unit)]
        n += len(x)
    model.train(was_training)
    kl_units = [(u / n).tolist() for u in units]
    kl = [sum(u) for u in kl_units]
    return {"elbo": -(recon / n + sum(kl)), "recon": recon / n, "kl": kl, "kl_units": kl_units}


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


def to_float32(obj: Any) -> Any:
    """Cast every floating tensor inside lists and dataclasses to float32 (after bf16 autocast)."""
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.is_floating_point() else obj
    if isinstance(obj, list):
        return [to_float32(o) for o in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: to_float32(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init})
    return obj


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


def _append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
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


def _truncate_jsonl(path: Path, key: str, limit: int) -> None:
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


# ----------------------------------------------------------------------------- the loop


def moving_average(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of `model`'s parameters and buffers (batch-norm statistics too, so
    the averaged weights are evaluated with averaged statistics). Its first `update_parameters` copies the
    weights; each later one moves the average (1 - decay) of the way towards them."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)



def make_optimizer(params, lr: float, device: torch.device, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam, fused into one kernel per step where torch has one for the device (CPU and CUDA):
    `make bench-compare` measures the whole step against the per-tensor loop. `eps`: the paper
    code's 1e-4 damps the steps of parameters whose gradients are tiny."""
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=device.type in ("cpu", "cuda"))


class Trainer:
    """Trains one run into `run_dir`; `fit()` can be called on a fresh or a resumed run.

    `progress=True` prints one line per epoch (test ELBO, recon, KL per layer, seconds) to
    stdout, and draws a bar per epoch only where someone watches (a terminal or a notebook:
    `lvae.progress`), so a log file gets the epoch lines and no redraws. `progress=False`
    (`--no-progress`) prints neither: for callers that keep their own log (epochs.jsonl has
    the same numbers).
    """

    def __init__(self, cfg: RunConfig, run_dir: Path, train_split: Split, test_split: Split, progress: bool = True,
                 data_root: Path | None = None):
        validate(cfg)
        self.cfg = copy.deepcopy(cfg)  # the run fixes its schedules' horizon in it; the caller's stays as given
        self.run_dir = Path(run_dir)
        self.progress = progress
        t = cfg.train
        device = resolve_device(t.device)
        self.train_split = train_split.head(t.limit)
        self.data = {"images": len(self.train_split), "sha256": data_fingerprint(self.train_split.images),
                     "root": str(data_root) if data_root is not None else None}
        if t.batch_size > len(self.train_split):
            raise ConfigError(f"batch size {t.batch_size} is larger than the data ({len(self.train_split)} images); lower --batch-size")
        world = dist_utils.launch_world_size()
        if t.batch_size % world:
            raise ConfigError(f"batch size {t.batch_size} must divide evenly over {world} processes")
        self.dist = dist_utils.context(t.device)
        self.device = self.dist.device if self.dist.enabled else device
        self.test_x = evaluation_inputs(test_split, cfg.model.likelihood)
        self.test_cpu_seconds = 0.0  # CPU this process spent in test passes: what a training-CPU budget leaves out
        torch.manual_seed(t.seed)
        self.model = use_fast_layout(build_model(cfg.model_kind, cfg.model).to(self.device), self.device)
        if self.dist.rank:  # every rank starts from rank 0's weights (DDP broadcasts them) but draws its own noise
            torch.manual_seed(t.seed + 1_000_003 * self.dist.rank)
        self.ema = moving_average(self.model, t.ema_decay) if t.ema_decay is not None else None
        self.net = self.dist.wrap(self.model)
        if t.compile:
            self.net = torch.compile(self.net)
        self.optimizer = make_optimizer(self.model.parameters(), t.lr, self.device, t.adam_eps)
        # On a GPU the training images live on the device and are binarized there: no copy per step.
        self.binarize_gen = torch.Generator(self.device if self.device.type == "cuda" else "cpu").manual_seed(t.seed + 1 + self.dist.rank)
        self.sampler = DistributedSampler(
            range(len(self.train_split)), num_replicas=self.dist.world_size, rank=self.dist.rank,
            shuffle=True, seed=t.seed, drop_last=True,
        )
        self.local_batch = t.batch_size // self.dist.world_size
        self.iters_per_epoch = len(self.sampler) // self.local_batch
        self.state = TrainState()
        self.last_saved: int | None = None  # iteration of the newest checkpoint on disk
        self.recent_grad_norms: deque[float] = deque(maxlen=200)

    @property
    def eval_model(self) -> HierarchicalModel:
        """The weights the run is scored and saved with: the moving average's with `ema_decay`, else the trained ones."""
        return self.ema.module if self.ema is not None else self.model

    # -------------------------------------------------------------- checkpointing

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
                _truncate_jsonl(self.run_dir / "history.jsonl", "iteration", self.state.iteration)
                _truncate_jsonl(self.run_dir / "epochs.jsonl", "epoch", self.state.epoch)

    def note_horizon(self) -> None:
        """Say so when a resumed run stops elsewhere than the horizon its schedules span."""
        t, names = self.cfg.train, horizon_schedules(self.cfg)
        if names and t.epochs != t.horizon:
            after = f"they hold their final values after epoch {t.horizon}" if t.epochs > t.horizon else "training stops before they end"
            print(f"note: this run keeps the {t.horizon}-epoch horizon it started with for {' and '.join(names)}; "
                  f"it now trains {t.epochs} epochs, so {after}", file=sys.stderr)

    def save(self, pending: list[dict[str, Any]]) -> None:
        """Flush the log rows, then write the checkpoint (rank 0 writes; every rank gives its RNG)."""
        bad = next((name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()), None)
        if bad is not None:  # identical on every rank: the parameters are
            raise self.non_finite(f"parameter {bad} is no longer finite")
        rng = self.dist.gather(self.rng_state())
        error: ckpt.CheckpointError | None = None
        if self.dist.is_main:
            try:
                _append_jsonl(self.run_dir / "history.jsonl", pending)
                ckpt.save_rotating(self.state_dict(rng), self.run_dir, self.state.iteration, self.cfg.train.keep_checkpoints)
            except ckpt.CheckpointError as e:
                error = e
        if self.dist.any(error is not None):  # a DiskFullError stays one: the command's exit code says "disk full"
            kind = type(error) if error is not None else ckpt.CheckpointError
            raise kind(f"{error or 'rank 0 could not write a checkpoint'}; {self.where_to_resume()}")
        self.last_saved = self.state.iteration
        pending.clear()

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

    def resume_command(self, extra: str = "") -> str:
        launcher = f"torchrun --nproc_per_node {self.dist.world_size}" if self.dist.enabled else "python"
        return f"{launcher} -m lvae train --resume {self.run_dir}{extra}"

    def where_to_resume(self, extra: str = "") -> str:
        if self.last_saved is None:
            return f"no checkpoint was written yet; start again with: python -m lvae train ... --out {self.run_dir} --overwrite{extra}"
        return (f"the last good checkpoint {self.run_dir / ckpt.LATEST} (iteration {self.last_saved}) is intact; "
                f"resume with: {self.resume_command(extra)}")

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

    # -------------------------------------------------------------- training

    def autocast(self):
        if self.cfg.train.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def schedules(self) -> tuple[float, float]:
        """(beta, lr) for the next step, laid out over the run's horizon rather than its current length."""
        cfg, s, epochs = self.cfg, self.state, self.cfg.train.horizon
        iterations = self.iters_per_epoch * epochs
        return beta_at(cfg.objective.beta, s.iteration, s.epoch, iterations, epochs), lr_at(cfg.train, s.iteration, iterations)

    def step(self, x: torch.Tensor, stop_requested: bool) -> tuple[dict[str, Any], bool]:
        """One optimiser step; returns the log row (means over ranks) and whether any rank must stop."""
        cfg, s = self.cfg, self.state
        beta, lr = self.schedules()
        x = model_inputs(x, cfg.model.likelihood, self.binarize_gen).to(self.device, non_blocking=True)
        draws = cfg.objective.draws  # K posterior draws per image for the importance-weighted bound, else 1
        with self.autocast():
            out = self.net(x, repeats=draws) if draws > 1 else self.net(x)
        if cfg.train.amp != "off":
            out = to_float32(out)  # the loss and its logged terms stay in float32
        terms = objective_loss(out, x, cfg.model.likelihood, beta, cfg.objective, cfg.model.output_variance)
        self.optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params]).detach()
        if cfg.train.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(params, cfg.train.grad_clip, grad_norm)
        if cfg.train.grad_clip_value is not None:  # the paper code: after the norm clip, element by element
            torch.nn.utils.clip_grad_value_(params, cfg.train.grad_clip_value)
        # One host sync per step: the logged terms (means over ranks), the gradient norm (the same on
        # every rank: the gradients are already averaged) and the stop flag come back in one copy.
        local = torch.stack([terms.loss.detach(), terms.recon.detach(), terms.elbo, *(k.detach() for k in terms.kl), grad_norm]).float()
        flag = torch.tensor([float(stop_requested)], device=local.device)
        loss, recon, elbo, *kl, norm, stop = self.dist.sum_(torch.cat([local / self.dist.world_size, flag])).tolist()
        row = {"iteration": s.iteration, "epoch": s.epoch, "beta": beta, "lr": lr,
               "loss": loss, "recon": recon, "kl": kl, "elbo": elbo, "grad_norm": norm}
        problem = first_non_finite(row, row["grad_norm"])
        if problem is not None:
            if problem.startswith("the gradient"):  # the gradients are still unclipped when the norm is not finite
                problem += f" (first non-finite gradient: {first_non_finite_gradient(self.model)})"
            raise self.non_finite(problem)
        self.recent_grad_norms.append(row["grad_norm"])
        for group in self.optimizer.param_groups:
            group["lr"] = row["lr"]
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return row, stop > 0

    def tests_after(self, epochs_done: int) -> bool:
        """Whether the test pass runs at the end of this (1-based) epoch: every `test_every`, a kept one, the last."""
        t = self.cfg.train
        return epochs_done % t.test_every == 0 or epochs_done in t.keep_epochs or epochs_done >= t.epochs

    def test_pass(self, epochs_done: int) -> dict[str, Any]:
        """Batch-norm statistics recomputed (if configured), then the test ELBO terms.

        The ELBO's noise comes from a generator seeded by (seed, epoch), not the global RNG the
        training steps draw from: how often this runs never changes the training trajectory.
        """
        cfg = self.cfg
        if cfg.train.bn_recompute:  # forks the global RNG itself
            recompute_batch_norm(self.eval_model, self.train_split.images, cfg.model.likelihood, seed=cfg.train.seed + 7919 * epochs_done)
        generator = torch.Generator(self.device).manual_seed(cfg.train.seed * 1_000_003 + epochs_done)
        with noise_from(generator):
            return split_elbo(self.eval_model, self.test_x, cfg.model.likelihood, cfg.model.output_variance)

    def fit(self) -> dict[str, Any]:
        """Train to the configured number of epochs; returns the last test ELBO terms."""
        cfg, s = self.cfg, self.state
        cfg.train.schedule_epochs = cfg.train.horizon  # a fresh run fixes its horizon now; a resumed one already has
        if self.dist.is_main:
            with self.resumable():
                ckpt.write_atomic(self.run_dir / "config.json", lambda f: f.write((json.dumps(cfg.to_dict(), indent=2) + "\n").encode()))
        self.model.train()
        pending: list[dict[str, Any]] = []
        last_eval: dict[str, Any] = {}
        images = self.train_split.images.to(self.binarize_gen.device)
        with stop_signals() as caught:
            while s.epoch < cfg.train.epochs:
                self.sampler.set_epoch(s.epoch)
                order = torch.tensor(list(self.sampler))
                bar = progress_bar(range(s.batch_in_epoch, self.iters_per_epoch), enabled=self.progress and self.dist.is_main,
                                   desc=f"epoch {s.epoch + 1}/{cfg.train.epochs}")
                t0, cpu0 = time.perf_counter(), cpu_clock()
                for b in bar:
                    idx = order[b * self.local_batch : (b + 1) * self.local_batch]
                    try:
                        row, stop = self.step(images[idx], caught["signum"] is not None)
                    except NonFiniteError:
                        if self.dist.is_main:  # the rows before the failure help diagnose it; resume drops them
                            _append_jsonl(self.run_dir / "history.jsonl", pending)
                        raise
                    pending.append(row)
                    s.epoch_elbo_sum += row["elbo"]
                    s.iteration += 1
                    s.batch_in_epoch = b + 1
                    if s.iteration % 10 == 0:
                        bar.set_postfix(loss=f"{row['loss']:.1f}", beta=f"{row['beta']:.3g}", kl=f"{sum(row['kl']):.1f}")
                    if stop:
                        self.save(pending)
                        self.interrupted(caught["signum"] or signal.SIGINT)  # no signum: another rank caught it
                    if s.iteration % cfg.train.checkpoint_every == 0:
                        self.save(pending)
                epoch_time = time.perf_counter() - t0
                if self.dist.is_main:
                    row = {"epoch": s.epoch, "seconds": epoch_time, "train_elbo": s.epoch_elbo_sum / max(1, s.batch_in_epoch)}
                    if self.tests_after(s.epoch + 1):
                        tc0 = cpu_clock()
                        last_eval = self.test_pass(s.epoch + 1)
                        self.test_cpu_seconds += cpu_clock() - tc0
                        row.update(last_eval)
                    row["cpu_seconds"] = cpu_clock() - cpu0  # this process's CPU, every thread, the test pass included: CPU budgets
                    with self.resumable():
                        _append_jsonl(self.run_dir / "epochs.jsonl", [row])
                    if self.progress and "elbo" in row:
                        print_line(f"epoch {s.epoch + 1}: test ELBO {last_eval['elbo']:.2f} nats "
                                   f"(recon {last_eval['recon']:.2f}, KL {[round(k, 2) for k in last_eval['kl']]}) in {epoch_time:.1f}s")
                s.epoch += 1
                s.batch_in_epoch = 0
                s.epoch_elbo_sum = 0.0
                if self.dist.is_main and s.epoch in cfg.train.keep_epochs:
                    self.keep_epoch_weights()
        self.save(pending)
        return last_eval
