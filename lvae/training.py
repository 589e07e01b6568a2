"""The training loop: knows the objective and the run folder, not the model's insides.

`Trainer.fit` is the loop: batch -> loss -> step -> log -> checkpoint. What makes a run safe to
stop and exact to resume (the run folder's files, checkpoints, RNG state, signals, full disks, the
messages that say how to resume) is `lvae.runstate.RunState`, the Trainer's base class.

With `train.ema_decay` the run keeps an exponential moving average of the weights (batch-norm
buffers too), updated after every optimizer step; everything that scores or saves the run uses
the average (`eval_model`), and with `train.bn_recompute` its batch-norm statistics are recomputed
before each test pass. Under torchrun every rank runs this loop on its share of each global
batch; logged values are means over ranks.
"""

from __future__ import annotations

import copy
import dataclasses
import signal
import time
from collections import deque
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data.distributed import DistributedSampler

from lvae import distributed as dist_utils
from lvae.batchnorm import recompute_batch_norm
from lvae.config import ConfigError, RunConfig
from lvae.data import Split, evaluation_inputs, model_inputs
from lvae.compiling import compile_seconds, compiled
from lvae.latents import noise_from
from lvae.losses import objective_loss, split_elbo
from lvae.model import HierarchicalModel, build_model, use_fast_layout
from lvae.progress import print_line, progress_bar
from lvae.runstate import RunState, TrainState, data_fingerprint, resolve_device, stop_signals
from lvae.schedules import beta_at, lr_at
from lvae.settings import validate

# Still importable from here, for code written before they moved to lvae.runstate, lvae.runfiles, lvae.data, lvae.losses.
from lvae.runfiles import read_jsonl  # noqa: E402,F401
from lvae.runstate import RESUMABLE_FIELDS, Interrupted, NonFiniteError, normalised_config  # noqa: E402,F401
from lvae.runstate import append_jsonl as _append_jsonl  # noqa: E402,F401

cpu_clock = time.process_time  # CPU seconds of this process, every thread (a test replaces it)


def to_float32(obj: Any) -> Any:
    """Cast every floating tensor inside lists and dataclasses to float32 (after bf16 autocast)."""
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.is_floating_point() else obj
    if isinstance(obj, list):
        return [to_float32(o) for o in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: to_float32(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init})
    return obj


def moving_average(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of `model`'s parameters and buffers (batch-norm statistics too): its first
    `update_parameters` copies the weights; each later one moves the average (1 - decay) of the way towards them."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def make_optimizer(params, lr: float, device: torch.device, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam, fused into one kernel per step where torch has one for the device (CPU and CUDA). `eps`: the paper
    code's 1e-4 damps the steps of parameters whose gradients are tiny."""
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=device.type in ("cpu", "cuda"))


class Trainer(RunState):
    """Trains one run into `run_dir`; `fit()` can be called on a fresh or a resumed run (`resume()` first).

    `progress`: one line per epoch on stdout (test ELBO, recon, KL per layer, seconds), and a bar only where
    someone watches (`lvae.progress`); `--no-progress` prints neither (epochs.jsonl has the same numbers).
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
            self.net = compiled(self.net)  # lvae.compiling: kernels cached across runs; eager, in one line, without a C++ compiler
        self.optimizer = make_optimizer(self.model.parameters(), t.lr, self.device, t.adam_eps)
        # On a GPU the training images live on the device and are binarized there: no copy per step.
        self.binarize_gen = torch.Generator(self.device if self.device.type == "cuda" else "cpu").manual_seed(t.seed + 1 + self.dist.rank)
        self.sampler = DistributedSampler(range(len(self.train_split)), num_replicas=self.dist.world_size, rank=self.dist.rank,
                                          shuffle=True, seed=t.seed, drop_last=True)
        self.local_batch = t.batch_size // self.dist.world_size
        self.iters_per_epoch = len(self.sampler) // self.local_batch
        self.state = TrainState()
        self.pending: list[dict[str, Any]] = []  # log rows of the iterations since the last checkpoint
        self.last_saved: int | None = None  # iteration of the newest checkpoint on disk
        self.recent_grad_norms: deque[float] = deque(maxlen=200)  # for the fix a NaN's message suggests

    @property
    def eval_model(self) -> HierarchicalModel:
        """The weights the run is scored and saved with: the moving average's with `ema_decay`, else the trained ones."""
        return self.ema.module if self.ema is not None else self.model

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
        self.check_finite(row)  # NaN or Inf: stop here, before the step changes the model
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
        self.write_config()
        self.model.train()
        self.pending = []
        last_eval: dict[str, Any] = {}
        images = self.train_split.images.to(self.binarize_gen.device)
        with stop_signals() as caught:  # Ctrl-C and SIGTERM set caught["signum"]; the loop stops after the step
            while s.epoch < cfg.train.epochs:
                self.sampler.set_epoch(s.epoch)
                order = torch.tensor(list(self.sampler))  # this rank's share of the epoch, a function of (seed, epoch)
                bar = progress_bar(range(s.batch_in_epoch, self.iters_per_epoch), enabled=self.progress and self.dist.is_main,
                                   desc=f"epoch {s.epoch + 1}/{cfg.train.epochs}")
                t0, cpu0 = time.perf_counter(), cpu_clock()
                for b in bar:
                    idx = order[b * self.local_batch : (b + 1) * self.local_batch]
                    row, stop = self.step(images[idx], caught["signum"] is not None)
                    self.pending.append(row)
                    s.epoch_elbo_sum += row["elbo"]
                    s.iteration += 1
                    s.batch_in_epoch = b + 1
                    if s.iteration % 10 == 0:
                        bar.set_postfix(loss=f"{row['loss']:.1f}", beta=f"{row['beta']:.3g}", kl=f"{sum(row['kl']):.1f}")
                    if stop:
                        self.save()
                        self.interrupted(caught["signum"] or signal.SIGINT)  # no signum: another rank caught it
                    if s.iteration % cfg.train.checkpoint_every == 0:
                        self.save()
                epoch_time = time.perf_counter() - t0
                if self.dist.is_main:
                    row = {"epoch": s.epoch, "seconds": epoch_time, "train_elbo": s.epoch_elbo_sum / max(1, s.batch_in_epoch)}
                    if self.tests_after(s.epoch + 1):
                        tc0 = cpu_clock()
                        last_eval = self.test_pass(s.epoch + 1)
                        self.test_cpu_seconds += cpu_clock() - tc0
                        row.update(last_eval)
                    row["cpu_seconds"] = cpu_clock() - cpu0  # this process's CPU, every thread, the test pass included: CPU budgets
                    if cfg.train.compile:  # seconds this process has spent compiling so far (in `seconds` too)
                        row["compile_seconds"] = compile_seconds()
                    self.log_epoch(row)
                    if self.progress and "elbo" in row:
                        print_line(f"epoch {s.epoch + 1}: test ELBO {last_eval['elbo']:.2f} nats "
                                   f"(recon {last_eval['recon']:.2f}, KL {[round(k, 2) for k in last_eval['kl']]}) in {epoch_time:.1f}s")
                s.epoch += 1
                s.batch_in_epoch = 0
                s.epoch_elbo_sum = 0.0
                if self.dist.is_main and s.epoch in cfg.train.keep_epochs:
                    self.keep_epoch_weights()
        self.save()
        return last_eval
