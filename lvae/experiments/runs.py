"""Which runs the figures and notebooks need, and how they are made: the orchestration half of
`make figures` (lvae.report.figures draws; this module trains, resumes and digests).

Where the numbers come from, cheapest first:
  results/summaries/<run>.json   committed digests of a run (training curves, test terms per epoch,
                                 active units per epoch): the curve figures need nothing else
  results/<run>.json, .pt        the evaluation's committed headline metrics (IW likelihood, class histogram)
                                 and weights, used when they were made with the same config
  runs/<run>/                    run folders (git-ignored) with checkpoints, for what is not committed
  training                       a missing run is trained first (lvae.training.Trainer), with a time
                                 estimate measured on this machine and a progress bar

LVAE_FAST=1 (read only by `fast_mode`) shrinks data, epochs and evaluation sizes for CI.
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from lvae import checkpoint as ckpt
from lvae.config import BetaSchedule, ConfigError, RunConfig, paper_config, validate, with_first_setup
from lvae.data import Split, load_split
from lvae.losses import compute_loss
from lvae.model import HierarchicalModel, build_model
from lvae.runfiles import read_json, reading
from lvae.runlock import run_lock
from lvae.training import Trainer, evaluation_inputs, make_optimizer, normalised_config, read_jsonl

# The repository (lvae is installed editable); notebooks run from notebooks/, so paths are anchored here.
ROOT = Path(__file__).resolve().parents[2] if (Path(__file__).resolve().parents[2] / "pyproject.toml").is_file() else Path.cwd()
RESULTS_DIR = ROOT / "results"
SEED = 0
SUMMARIES = "summaries"


# ----------------------------------------------------------------------------- budget


def fast_mode() -> bool:
    """True when LVAE_FAST is set (and not 0): the one place the fast switch is read."""
    return os.environ.get("LVAE_FAST", "0").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Budget:
    """How much work a figure or notebook may do. Full size for people, fast for CI."""

    train_limit: int | None  # training images of the headline runs (None: all 60k)
    epochs: int | None  # headline epochs (None: the config's own)
    warmup_limit: int  # training images of the warm-up study
    warmup_epochs: int
    warmup_length: int  # epochs over which the study's warm-ups rise
    eval_images: int  # test images for latents, active units
    prior_samples: int  # samples for the class histogram
    iw_samples: int  # K of the importance-weighted bound (notebook 04)
    iw_images: int
    trainer_test_images: int | None  # test images scored after each training epoch (None: all 10k)
    tag: str  # runs of a fast budget live apart from full-size ones

    def runs_root(self) -> Path:
        root = Path(os.environ.get("LVAE_RUNS") or ROOT / "runs")
        return root / self.tag if self.tag else root


FULL = Budget(train_limit=None, epochs=None, warmup_limit=10_000, warmup_epochs=10, warmup_length=5, eval_images=2000,
              prior_samples=2000, iw_samples=100, iw_images=200, trainer_test_images=None, tag="")
FAST = Budget(train_limit=2048, epochs=1, warmup_limit=1024, warmup_epochs=3, warmup_length=2, eval_images=500,
              prior_samples=500, iw_samples=8, iw_images=100, trainer_test_images=500, tag="fast")


def budget() -> Budget:
    return FAST if fast_mode() else FULL


# ----------------------------------------------------------------------------- the runs figures use


def headline_config(model_kind: str, b: Budget) -> RunConfig:
    """The seed model, exactly as `python -m lvae train --config seed --model KIND` builds it."""
    from lvae.cli import build_parser, config_from_args

    argv = ["train", "--config", "seed", "--model", model_kind]
    if b.epochs is not None:
        argv += ["--epochs", str(b.epochs)]
    if b.train_limit is not None:
        argv += ["--limit", str(b.train_limit)]
    return config_from_args(build_parser().parse_args(argv))


# The seed comparison: the ladder against a VAE with one latent (the top rung's) on the same trunks.
HEADLINE = {"LVAE": "seed-lvae", "top-latent VAE": "seed-vae"}


def warmup_base(b: Budget, first_setup: bool = True) -> RunConfig:
    """The warm-up study's model: the paper's five-layer ladder, on a subset, one checkpoint per epoch, in the
    first setup (docs/fidelity.md), where the study's committed summaries and notebook 03's account of them were made;
    `first_setup=False`: today's `paper` setup (the paper code's choices) at the same size."""
    cfg = paper_config()
    if first_setup:
        with_first_setup(cfg)
    cfg.name = "warmup"
    cfg.train.limit, cfg.train.epochs = b.warmup_limit, b.warmup_epochs
    cfg.train.checkpoint_every = iterations_per_epoch(cfg)
    cfg.train.keep_checkpoints = b.warmup_epochs
    return cfg


def iterations_per_epoch(cfg: RunConfig, n_train: int = 60_000) -> int:
    n = min(n_train, cfg.train.limit or n_train)
    return n // cfg.train.batch_size


def warmup_schedule(kind: str, start: float, end: float, length_epochs: int, ipe: int) -> BetaSchedule:
    """A warm-up from `start` to `end` over `length_epochs` epochs, rising per iteration or per epoch."""
    if kind == "linear_iter":
        return BetaSchedule("linear_iter", start, end, length_epochs * ipe)
    return BetaSchedule(kind, start, end, length_epochs)


def with_beta(base: RunConfig, schedule: BetaSchedule, name: str) -> RunConfig:
    """A copy of `base` (sharing nothing with it) with another β schedule and name."""
    cfg = copy.deepcopy(base)
    cfg.name, cfg.objective.beta = name, schedule
    return cfg


def warmup_study(b: Budget) -> dict[str, RunConfig]:
    """Three runs that differ only in β: none (β = 1 throughout), per iteration, per epoch."""
    base = warmup_base(b)
    ipe = iterations_per_epoch(base)
    schedules = {
        "no warm-up": ("warmup-none", BetaSchedule("constant", 1.0, 1.0, None)),
        "per iteration": ("warmup-iter", warmup_schedule("linear_iter", 0.0, 1.0, b.warmup_length, ipe)),
        "per epoch": ("warmup-epoch", warmup_schedule("linear_epoch", 0.0, 1.0, b.warmup_length, ipe)),
    }
    return {label: with_beta(base, sched, name) for label, (name, sched) in schedules.items()}


def todays_warmup(b: Budget) -> RunConfig:
    """The study's "per epoch" run on today's `paper` setup: the same size and β, the paper code's choices."""
    base = warmup_base(b, first_setup=False)
    return with_beta(base, warmup_schedule("linear_epoch", 0.0, 1.0, b.warmup_length, iterations_per_epoch(base)),
                     "warmup-epoch-paper")


# ----------------------------------------------------------------------------- training what is missing

IGNORED_FIELDS = ("name", "train.device", "train.checkpoint_every", "train.keep_checkpoints")


def config_mismatch(run_dir: Path, cfg: RunConfig) -> list[str]:
    """How the run in `run_dir` was made differently from `cfg` (fields that change no result ignored)."""
    return config_mismatch_dict(normalised_config(ckpt.load_config(run_dir / "config.json")), cfg)


def config_mismatch_dict(saved: dict[str, Any], cfg: RunConfig) -> list[str]:
    """`config_mismatch` for a saved config dict, read as this version reads it (fields added since take their defaults)."""
    diffs = ckpt.config_differences(normalised_config(RunConfig.from_dict(saved)), normalised_config(cfg))
    return [f"{k}: {a!r} there, {b!r} wanted" for k, (a, b) in diffs.items() if not k.startswith(IGNORED_FIELDS)]


def is_complete(run_dir: Path, cfg: RunConfig) -> bool:
    """A finished run of exactly `cfg` (all epochs evaluated, checkpoint present)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() or not (run_dir / ckpt.LATEST).is_file():
        return False
    if config_mismatch(run_dir, cfg):
        return False
    return len(read_jsonl(run_dir / "epochs.jsonl")) >= cfg.train.epochs


def estimate_seconds(cfg: RunConfig, n_train: int, n_test: int, steps: int = 3) -> float:
    """Wall time of a run, from the median of a few timed training steps and one test batch here.

    The first step pays for one-off set-up and is not counted; the median shrugs off a
    spike from other work on a shared machine.
    """
    torch.manual_seed(SEED)
    model = build_model(cfg.model_kind, cfg.model)
    opt = make_optimizer(model.parameters(), cfg.train.lr, torch.device("cpu"))
    x = torch.rand(cfg.train.batch_size, *cfg.model.image_shape)
    if cfg.model.likelihood == "bernoulli":
        x = x.round()
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        terms = compute_loss(model(x), x, cfg.model.likelihood, 1.0, cfg.objective.kl_mode, output_variance=cfg.model.output_variance)
        opt.zero_grad()
        terms.loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[1:])
    with torch.no_grad():
        model.eval()
        t0 = time.perf_counter()
        model(x)
        per_test_image = (time.perf_counter() - t0) / len(x)
    return cfg.train.epochs * (iterations_per_epoch(cfg, n_train) * step + per_test_image * n_test)


SHORT_RUN = 50  # iterations; below this a run takes seconds and timing it first would cost as much


def ensure_run(cfg: RunConfig, run_dir: Path, data: "Data", progress: bool = True) -> Path:
    """`run_dir` holding a finished run of `cfg`: reused if there, resumed if half done, else trained.

    A folder holding a run of another configuration is never overwritten: that is an error.
    """
    run_dir = Path(run_dir)
    if is_complete(run_dir, cfg):
        return run_dir
    resume = (run_dir / "config.json").is_file()
    if resume:
        diffs = config_mismatch(run_dir, cfg)
        if diffs:
            raise ConfigError(f"{run_dir} holds a run made differently ({'; '.join(diffs[:3])}); "
                              f"move it away or delete it, and the figures will train the run they need")
    validate(cfg)
    with run_lock(run_dir):  # one writer per run folder (lvae.runlock), before anything is deleted
        if resume and not (run_dir / ckpt.LATEST).is_file():  # a run of this config that died before its first checkpoint: start afresh
            from lvae.cli import existing_run_files

            for name in existing_run_files(run_dir):
                (run_dir / name).unlink()
            resume = False
        with torch.enable_grad():  # a notebook may have switched autograd off for its own cells
            return _train(cfg, run_dir, data, progress, resume)


def shown(path: Path) -> Path:
    """`path` as printed: relative to the repository where it lies inside it, so a notebook's output
    names no folder of the machine that ran it."""
    try:
        return Path(path).resolve().relative_to(ROOT)
    except ValueError:
        return Path(path)


def _train(cfg: RunConfig, run_dir: Path, data: "Data", progress: bool, resume: bool) -> Path:
    ipe = iterations_per_epoch(cfg, len(data.train))
    if ipe * cfg.train.epochs > SHORT_RUN:
        estimate = f"about {duration(estimate_seconds(cfg, len(data.train), len(data.trainer_test)))} on this machine"
    else:
        estimate = "a short run, not timed first"
    what = "resuming" if resume else "training"
    print(f"{what} {shown(run_dir)}: {cfg.train.epochs} epochs x {ipe} iterations, {estimate}", flush=True)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, run_dir, data.train, data.trainer_test, progress=progress)
    if resume:
        trainer.resume()
    trainer.fit()
    print(f"trained {shown(run_dir)} in {duration(time.perf_counter() - t0)}", flush=True)
    return run_dir


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ----------------------------------------------------------------------------- run summaries


@dataclass
class RunSummary:
    """What the figures need from a run folder, small enough to commit (results/summaries/<run>.json).

    Curves are means over windows of `stride` training iterations; `epochs` holds the
    test terms (paper KL, β = 1) after each epoch; active units are counted on test images
    at every epoch-end checkpoint the run kept.
    """

    name: str
    config: dict[str, Any]
    iterations_per_epoch: int
    stride: int
    iteration: list[int]
    beta: list[float]
    recon: list[float]
    kl: list[list[float]]  # (rows, layers), bottom first
    epochs: list[dict[str, Any]]
    latent_sizes: list[int]
    stochastic: list[bool]
    active_epochs: list[int] = field(default_factory=list)
    active_units: list[list[int]] = field(default_factory=list)  # (checkpoints, layers)

    @property
    def run_config(self) -> RunConfig:
        return RunConfig.from_dict(self.config)

    @property
    def latent_layers(self) -> list[int]:
        """The rungs that hold a latent: per-latent lists (`kl`, `active_units`) follow this order."""
        return [k for k, stochastic in enumerate(self.stochastic) if stochastic]

    def per_rung(self, values: list[Any]) -> list[Any]:
        """A per-latent list spread over every rung, None where the rung is deterministic."""
        spread: list[Any] = [None] * len(self.stochastic)
        for k, v in zip(self.latent_layers, values):
            spread[k] = v
        return spread

    @property
    def schedule(self) -> BetaSchedule:
        return self.run_config.objective.beta

    def save(self, path: Path) -> None:
        ckpt.write_atomic(path, lambda f: f.write((json.dumps(asdict(self), separators=(",", ":")) + "\n").encode()))

    @classmethod
    def load(cls, path: Path) -> "RunSummary":
        """A saved summary, checked as the figures use it (its config and curves); a damaged one is named."""
        what = "a run summary lvae wrote"
        data = read_json(path, what)
        with reading(path, what, "delete it, and the figures will summarise the run again"):
            summary = cls(**data)
            validate(summary.run_config)
        return summary


def _window_means(values: list[Any], stride: int) -> list[Any]:
    t = torch.tensor(values, dtype=torch.float64)
    n = len(t) // stride * stride
    t = t[:n].reshape(n // stride, stride, *t.shape[1:]).mean(1)
    return t.tolist()


def epoch_checkpoints(run_dir: Path, ipe: int) -> dict[int, Path]:
    """The numbered checkpoints a run kept at the end of an epoch: {epoch (0-based): path}."""
    out = {}
    for p in sorted(Path(run_dir).glob(ckpt.CHECKPOINT_GLOB)):
        it = int(p.stem.split("-")[1])
        if it and it % ipe == 0:
            out[it // ipe - 1] = p
    return out


def summarise_run(run_dir: Path, x_eval: torch.Tensor, max_rows: int = 300) -> RunSummary:
    """Digest a finished run folder; active units are measured at each epoch-end checkpoint."""
    from lvae.evaluation import active_units

    run_dir = Path(run_dir)
    cfg, model = ckpt.load_run(run_dir)
    rows = read_jsonl(run_dir / "history.jsonl")
    if not rows:
        raise ckpt.CheckpointError(f"{run_dir}: no history.jsonl rows to summarise; train the run first")
    ipe = sum(1 for r in rows if r["epoch"] == 0)
    stride = max(1, math.ceil(len(rows) / max_rows))
    active_epochs, active = [], []
    for epoch, path in epoch_checkpoints(run_dir, ipe).items():
        model.load_state_dict(ckpt.load(path)["model"])
        counts, _, _ = active_units(model.eval(), x_eval)
        active_epochs.append(epoch)
        active.append(counts)
    return RunSummary(
        name=run_dir.name,
        config=normalised_config(cfg),
        iterations_per_epoch=ipe,
        stride=stride,
        iteration=[rows[i + stride - 1]["iteration"] for i in range(0, len(rows) // stride * stride, stride)],
        beta=_window_means([r["beta"] for r in rows], stride),
        recon=_window_means([r["recon"] for r in rows], stride),
        kl=_window_means([r["kl"] for r in rows], stride),
        epochs=read_jsonl(run_dir / "epochs.jsonl"),
        latent_sizes=[math.prod(s) for s in model.latent_shapes],
        stochastic=list(model.stochastic),
        active_epochs=active_epochs,
        active_units=active,
    )


# ----------------------------------------------------------------------------- data and models


class Data:
    """The MNIST splits and the evaluation views, loaded once."""

    def __init__(self, b: Budget, root: Path | None = None):
        self.budget = b
        root = root or Path(os.environ.get("LVAE_DATA") or ROOT / "data")
        self.train = load_split("mnist", "train", root)
        self.test = load_split("mnist", "test", root)
        # what the Trainer scores after each epoch: the whole test set at full size
        self.trainer_test = self.test.head(b.trainer_test_images)

    def eval_split(self, n: int | None = None) -> Split:
        return self.test.head(n or self.budget.eval_images)

    def eval_inputs(self, likelihood: str, n: int | None = None) -> torch.Tensor:
        return evaluation_inputs(self.eval_split(n), likelihood)


class Results:
    """Runs, summaries and models for the figures and notebooks; everything is made on first use.

    `results_dir` is read first (committed files); new summaries are written there at full
    size and beside the runs in fast mode, so CI never touches committed results.
    """

    def __init__(self, b: Budget | None = None, results_dir: Path = RESULTS_DIR, data_root: Path | None = None, progress: bool = True):
        self.budget = b or budget()
        self.results_dir = Path(results_dir)
        self.data_root = data_root
        self.progress = progress
        self._models: dict[str, HierarchicalModel] = {}

    @cached_property
    def data(self) -> Data:
        return Data(self.budget, self.data_root)

    def run_dir(self, name: str) -> Path:
        return self.budget.runs_root() / name

    def _summary_paths(self, name: str) -> list[Path]:
        own = self.budget.runs_root() / SUMMARIES / f"{name}.json"
        committed = self.results_dir / SUMMARIES / f"{name}.json"
        return [own] if self.budget.tag else [committed, own]

    def summary(self, cfg: RunConfig, name: str) -> RunSummary:
        """The digest of run `name` (made with `cfg`): from a cached file, else from the run (trained if needed)."""
        for path in self._summary_paths(name):
            if path.is_file():
                s = RunSummary.load(path)
                if not config_mismatch_dict(s.config, cfg):
                    return s
        run = ensure_run(cfg, self.run_dir(name), self.data, self.progress)
        s = summarise_run(run, self.data.eval_inputs(cfg.model.likelihood))
        s.save(self._summary_paths(name)[0])
        return s

    def model(self, cfg: RunConfig, name: str) -> HierarchicalModel:
        """The trained model of run `name` in eval mode: the committed results/<name>.pt (lvae.results) if it was
        made with `cfg`, else the run folder (trained first if missing)."""
        committed = self.results_dir / f"{name}.pt"
        if committed.is_file() and not self.budget.tag:
            from lvae.results import load_model

            saved_cfg, model = load_model(committed)
            if not config_mismatch_dict(normalised_config(saved_cfg), cfg):
                return model
        _, model = ckpt.load_run(ensure_run(cfg, self.run_dir(name), self.data, self.progress))
        return model

    # -------------------------------------------------------------- the two studies

    def headline_configs(self) -> dict[str, RunConfig]:
        return {label: headline_config(kind, self.budget) for label, kind in (("LVAE", "lvae"), ("top-latent VAE", "top-vae"))}

    def headline_model(self, label: str) -> HierarchicalModel:
        """'LVAE' or 'top-latent VAE': the seed model's trained weights, loaded once."""
        if label not in self._models:
            self._models[label] = self.model(self.headline_configs()[label], HEADLINE[label])
        return self._models[label]

    @property
    def headline_models(self) -> dict[str, HierarchicalModel]:
        return {label: self.headline_model(label) for label in HEADLINE}

    @cached_property
    def headline_summaries(self) -> dict[str, RunSummary]:
        return {label: self.summary(cfg, HEADLINE[label]) for label, cfg in self.headline_configs().items()}

    def headline_metrics(self) -> dict[str, dict[str, Any]]:
        """The committed results/<run>.json (lvae.results) per model, where they exist (full size only)."""
        out = {}
        for label, name in HEADLINE.items():
            path = self.results_dir / f"{name}.json"
            if path.is_file() and not self.budget.tag:
                out[label] = read_json(path, "a result lvae wrote")
        return out

    @cached_property
    def warmup_summaries(self) -> dict[str, RunSummary]:
        return {label: self.summary(cfg, cfg.name) for label, cfg in warmup_study(self.budget).items()}

    @cached_property
    def todays_warmup(self) -> RunSummary:
        """The study's "per epoch" run trained on today's `paper` setup (`todays_warmup`), trained on first use."""
        cfg = todays_warmup(self.budget)
        return self.summary(cfg, cfg.name)

    def live_warmup(self, schedule: BetaSchedule) -> RunSummary:
        """A short run of the warm-up study's model with any schedule: what the notebook's button trains."""
        name = f"warmup-live-{schedule.kind}-{schedule.start:g}-{schedule.end:g}-{schedule.steps}"
        return self.summary(with_beta(warmup_base(self.budget), schedule, name), name)
