"""`python -m lvae.figures`: every PNG in figures/, from cached results, training only what is missing.

Where the numbers come from, cheapest first:
  results/summaries/<run>.json   committed digests of a run (training curves, test terms per epoch,
                                 active units per epoch): the curve figures need nothing else
  results/<run>.json, .pt        the evaluation's committed headline metrics (IW likelihood, class histogram)
                                 and weights, used when they were made with the same config
  runs/<run>/                    run folders (git-ignored) with checkpoints, for what is not committed
  training                       a missing run is trained first (lvae.training.Trainer), with a time
                                 estimate measured on this machine and a progress bar

The notebooks use the same functions, so a notebook cell and its PNG are the same picture.
LVAE_FAST=1 (read only by `fast_mode`) shrinks data, epochs and evaluation sizes for CI.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from lvae import checkpoint as ckpt
from lvae import plots
from lvae.config import BetaSchedule, ConfigError, RunConfig, paper_config, validate
from lvae.data import DataError, Split, load_split
from lvae.losses import compute_loss
from lvae.model import HierarchicalModel, LadderVAE, build_model
from lvae.schedules import beta_curve
from lvae.training import Trainer, evaluation_inputs, normalised_config, read_jsonl

DPI = 150
SEED = 0
# The repository (lvae is installed editable); notebooks run from notebooks/, so paths are anchored here.
ROOT = Path(__file__).resolve().parents[1] if (Path(__file__).resolve().parents[1] / "pyproject.toml").is_file() else Path.cwd()
FIGURES_DIR = ROOT / "figures"
RESULTS_DIR = ROOT / "results"
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


def warmup_base(b: Budget) -> RunConfig:
    """The warm-up study's model: the paper's five-layer ladder, on a subset, one checkpoint per epoch."""
    cfg = paper_config()
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
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
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
        resume = (run_dir / ckpt.LATEST).is_file()
        if not resume:  # a run of this config that died before its first checkpoint: start it afresh
            from lvae.cli import existing_run_files

            for name in existing_run_files(run_dir):
                (run_dir / name).unlink()
    validate(cfg)
    with torch.enable_grad():  # a notebook may have switched autograd off for its own cells
        return _train(cfg, run_dir, data, progress, resume)


def _train(cfg: RunConfig, run_dir: Path, data: "Data", progress: bool, resume: bool) -> Path:
    ipe = iterations_per_epoch(cfg, len(data.train))
    if ipe * cfg.train.epochs > SHORT_RUN:
        estimate = f"about {_duration(estimate_seconds(cfg, len(data.train), len(data.trainer_test)))} on this machine"
    else:
        estimate = "a short run, not timed first"
    what = "resuming" if resume else "training"
    print(f"{what} {run_dir}: {cfg.train.epochs} epochs x {ipe} iterations, {estimate}", flush=True)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, run_dir, data.train, data.trainer_test, progress=progress)
    if resume:
        trainer.resume()
    trainer.fit()
    print(f"trained {run_dir} in {_duration(time.perf_counter() - t0)}", flush=True)
    return run_dir


def _duration(seconds: float) -> str:
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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: Path) -> "RunSummary":
        return cls(**json.loads(Path(path).read_text()))


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
                out[label] = json.loads(path.read_text())
        return out

    @cached_property
    def warmup_summaries(self) -> dict[str, RunSummary]:
        return {label: self.summary(cfg, cfg.name) for label, cfg in warmup_study(self.budget).items()}

    def live_warmup(self, schedule: BetaSchedule) -> RunSummary:
        """A short run of the warm-up study's model with any schedule: what the notebook's button trains."""
        name = f"warmup-live-{schedule.kind}-{schedule.start:g}-{schedule.end:g}-{schedule.steps}"
        return self.summary(with_beta(warmup_base(self.budget), schedule, name), name)


# ----------------------------------------------------------------------------- what the figures show


@torch.no_grad()
def top_latent_codes(model: HierarchicalModel, x: torch.Tensor, seed: int = SEED) -> torch.Tensor:
    """One draw z_top ~ q(z_top | x) per image: (N, D), samples of the aggregate posterior."""
    torch.manual_seed(seed)
    return model(x).latents[-1].z.flatten(1)


@torch.no_grad()
def samples(model: HierarchicalModel, n: int = 64, temperature: float = 1.0, seed: int = SEED) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.generate(n, temperature)


@torch.no_grad()
def reconstructions(model: HierarchicalModel, x: torch.Tensor, seed: int = SEED) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.reconstruct(x)


@torch.no_grad()
def merge_view(model: HierarchicalModel, x: torch.Tensor, layer: int = 0, seed: int = SEED) -> dict[str, torch.Tensor]:
    """Encoder, decoder prior and merged Gaussians of `layer` for a batch, flattened to (B, D) each."""
    torch.manual_seed(seed)
    out = model(x)
    if not isinstance(model, LadderVAE) or not 0 <= layer < model.depth - 1:
        raise ConfigError(f"layer {layer} has no merge: choose a ladder layer below the top (0..{model.depth - 2})")
    q_hat, p, q = out.latents[layer].q_hat, out.latents[layer].p, out.latents[layer].q
    flat = lambda t: t.flatten(1)  # noqa: E731
    return {"mu_q": flat(q_hat.mu), "logvar_q": flat(q_hat.logvar), "mu_p": flat(p.mu), "logvar_p": flat(p.logvar),
            "mu": flat(q.mu), "logvar": flat(q.logvar)}


def illustrative_units(view: dict[str, torch.Tensor], image: int = 0, weights: tuple[float, ...] = (0.95, 0.5, 0.05)) -> list[dict[str, float]]:
    """Units of one image whose encoder weight is nearest each target: encoder-led, balanced, prior-led."""
    w = torch.sigmoid(view["logvar_p"][image] - view["logvar_q"][image])
    chosen = []
    for target in weights:
        order = torch.argsort((w - target).abs())
        u = int(next(i for i in order.tolist() if i not in chosen))
        chosen.append(u)
    units = []
    for u in chosen:
        g = {k: float(view[k][image, u]) for k in view}
        units.append({"mu_q": g["mu_q"], "var_q": math.exp(g["logvar_q"]), "mu_p": g["mu_p"], "var_p": math.exp(g["logvar_p"]),
                      "mu": g["mu"], "var": math.exp(g["logvar"]), "label": f"unit {u}"})
    return units


def class_histograms(models: dict[str, HierarchicalModel], n: int, seed: int = SEED) -> dict[str, list[float]]:
    """Fraction of `n` prior samples per digit, by the shipped classifier (lvae.classifier)."""
    from lvae.classifier import class_histogram, load_classifier, predict

    judge = load_classifier()
    return {name: class_histogram(predict(judge, samples(m, n, seed=seed))).tolist() for name, m in models.items()}


def layer_table(model: HierarchicalModel, gaussians: list[Any]) -> "Any":
    """One row per layer (bottom first): kind, latent shape, units, and the Gaussians' average μ and σ².

    `gaussians` is any per-layer list of a pass (`bottom_up`, `.priors`, `.posteriors`); None rows
    are deterministic layers.
    """
    import pandas as pd

    rows = []
    for k, (spec, shape, g) in enumerate(zip(model.config.layers, model.latent_shapes, gaussians)):
        row = {"layer": f"z{k}" + (" (top)" if k == model.depth - 1 else ""), "rung": spec.kind, "latent shape": tuple(shape),
               "units": math.prod(shape)}
        if g is None:
            row.update({"mean μ": None, "mean σ²": None, "stored as": "deterministic"})
        else:
            row.update({"mean μ": round(float(g.mu.mean()), 3), "mean σ²": round(float(g.logvar.exp().mean()), 3),
                        "stored as": f"μ, log σ² of shape {tuple(g.mu.shape)}"})
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")


def source(obj: Any) -> "Any":
    """The package's own code of `obj` (a function, method or class), shown as a code block in a notebook.

    The notebooks teach the model by showing the lines they explain and then running them on
    real numbers; taking those lines from the package, never pasting a copy, keeps the page
    and the tested code one and the same.
    """
    import inspect
    import textwrap

    from IPython.display import Code

    return Code(textwrap.dedent(inspect.getsource(obj)), language="python")


def summary_table(summaries: dict[str, RunSummary]) -> "Any":
    """One row per run: the final test ELBO terms, KL and active units per layer (bottom first)."""
    import pandas as pd

    rows = []
    for name, s in summaries.items():
        last = s.epochs[-1]
        active = s.active_units[-1] if s.active_units else []
        rows.append({"run": name, "test ELBO": round(last["elbo"], 2), "recon": round(last["recon"], 2),
                     "KL per layer": [round(k, 2) for k in last["kl"]],
                     "active units": [f"{a}/{n}" if a is not None else "det." for a, n in zip(s.per_rung(active), s.latent_sizes)]})
    return pd.DataFrame(rows).set_index("run")


# ----------------------------------------------------------------------------- the figures


def fig_samples(r: Results) -> Figure:
    grids = {name: samples(m, 64) for name, m in r.headline_models.items()}
    return plots.image_grids(grids, nrow=8, title="Samples from the prior N(0, I), temperature 1")


def fig_reconstructions(r: Results) -> Figure:
    x = r.data.test.images[:12]
    rows = {"data": x, **{name: reconstructions(m, x) for name, m in r.headline_models.items()}}
    return plots.image_rows(rows, title="Test digits and their reconstructions (mean of p(x|z))")


def fig_top_latent(r: Results) -> Figure:
    split = r.data.eval_split()
    codes = {name: (top_latent_codes(m, split.images), split.labels) for name, m in r.headline_models.items()}
    return plots.top_latent(codes)


def fig_class_histogram(r: Results) -> Figure:
    metrics = r.headline_metrics()
    if len(metrics) == len(HEADLINE) and all("class_histogram" in m for m in metrics.values()):
        hists = {k: m["class_histogram"] for k, m in metrics.items()}
        counts = {k: m["prior_samples"] for k, m in metrics.items()}
    else:
        n = r.budget.prior_samples
        hists, counts = class_histograms(r.headline_models, n), {k: n for k in HEADLINE}
    ref = torch.bincount(r.data.test.labels, minlength=10).double() / len(r.data.test)
    return plots.class_histogram(hists, counts, ref.tolist())


def fig_kl_per_layer(r: Results) -> Figure:
    return plots.kl_per_layer(r.headline_summaries)


def fig_active_units(r: Results) -> Figure:
    summaries = r.headline_summaries
    counts = {}
    for name, s in summaries.items():
        counts[name] = s.per_rung(s.active_units[-1])
    sizes = next(iter(summaries.values())).latent_sizes
    return plots.active_units(counts, sizes)


def fig_likelihood(r: Results) -> Figure:
    metrics = r.headline_metrics()
    iw = {k: -m["nll"] for k, m in metrics.items() if "nll" in m}
    k = next((m["iw_samples"] for m in metrics.values() if "iw_samples" in m), None)
    return plots.likelihood_curves(r.headline_summaries, iw or None, f"IW bound, K={k}" if k else "IW bound")


def fig_warmup_schedules(r: Results) -> Figure:
    s = r.warmup_summaries
    ipe = next(iter(s.values())).iterations_per_epoch
    epochs = r.budget.warmup_epochs
    curves = {name: beta_curve(v.schedule, ipe, epochs) for name, v in s.items()}
    return plots.beta_schedules(curves, ipe)


def fig_warmup_effect(r: Results) -> Figure:
    return plots.warmup_effect(r.warmup_summaries)


def fig_encoder_maps(r: Results) -> Figure:
    model = r.headline_model("LVAE")
    with torch.no_grad():
        x = r.data.test.images[:1]
        g = model.bottom_up(x)[0]
    return plots.latent_maps(g.mu[0], g.logvar[0], image=x[0], title="Bottom-up pass: the spatial latent q̂(z₀|x) of one test digit")


def fig_merge(r: Results) -> Figure:
    view = merge_view(r.headline_model("LVAE"), r.data.test.images[:1])
    return plots.gaussian_merge(illustrative_units(view))


def fig_merge_weights(r: Results) -> Figure:
    view = merge_view(r.headline_model("LVAE"), r.data.test.images[:64])
    return plots.merge_weights(view["logvar_q"], view["logvar_p"])


def fig_temperature(r: Results) -> Figure:
    model = r.headline_model("LVAE")
    return plots.image_grids({f"T = {t}": samples(model, 36, t) for t in (0.5, 0.8, 1.0)}, nrow=6, title="LVAE samples at three temperatures")


class SkipFigure(Exception):
    """A figure whose data come only from long runs that are not there (the message says which)."""


def _paper_pair(r: Results) -> tuple[dict[str, dict[str, Any]], str]:
    from lvae import paper

    pair, what = paper.comparison_pair(paper.load_results(r.results_dir / "paper"))
    if not pair:
        raise SkipFigure(f"needs the 5-layer VAE and LVAE in {r.results_dir / 'paper'} (make paper)")
    return pair, what


def fig_paper_depth(r: Results) -> Figure:
    from lvae import paper

    points = paper.depth_points(paper.load_results(r.results_dir / "paper"))
    if not points:
        raise SkipFigure(f"needs depth-sweep results in {r.results_dir / 'paper'} (make paper)")
    done, total = sum(len(p) for p in points.values()), len(paper.DEPTHS) * len(paper.VARIANTS)
    status = "" if done == total else f" — partial: {done} of {total} runs"
    return plots.nll_vs_depth(points, f"Test NLL against depth ({paper.SWEEP.epochs} epochs, K = {paper.SWEEP.iw_samples}){status}")


def fig_paper_elbo(r: Results) -> Figure:
    pair, what = _paper_pair(r)
    curves = {label: {"train": m["per_epoch"]["train_elbo"], "test": m["per_epoch"]["elbo"]} for label, m in pair.items()}
    return plots.elbo_curves(curves, f"Train and test ELBO per epoch, {what}")


def fig_paper_kl_units(r: Results) -> Figure:
    pair, what = _paper_pair(r)
    return plots.kl_unit_heatmaps({label: m["per_epoch"]["kl_units"] for label, m in pair.items()}, f"KL per latent unit, {what}")


def fig_paper_active_units(r: Results) -> Figure:
    pair, what = _paper_pair(r)
    sizes = next(iter(pair.values()))["latent_units"]
    fig = plots.active_units({label: m["active_units"] for label, m in pair.items()}, sizes)
    fig.suptitle(f"Active units per layer, {what}")
    return fig


def fig_paper_pca(r: Results) -> Figure:
    pair, what = _paper_pair(r)
    return plots.posterior_pca({label: m["pca"] for label, m in pair.items()},
                               f"One posterior sample per test digit, first two principal components, {what}")


# name -> (what it shows, how it is drawn); the README lists them in this order.
FIGURES: dict[str, tuple[str, Callable[[Results], Figure]]] = {
    "lvae_vs_vae_samples.png": ("64 samples from each model's prior (N(0, I) at the top, temperature 1).", fig_samples),
    "reconstructions.png": ("Test digits (top row) and their LVAE and VAE reconstructions.", fig_reconstructions),
    "top_latent.png": ("The top latent over test images against N(0, I), coloured by digit, with each unit's marginal.", fig_top_latent),
    "class_histogram.png": ("Digit classes of prior samples, by the shipped classifier, against the test set's frequencies.", fig_class_histogram),
    "kl_per_layer.png": ("KL of each layer over training and at the end (test set), LVAE and VAE.", fig_kl_per_layer),
    "active_units.png": ("Active units per layer (Cov_x E_q[z_u] > 0.01) for both models.", fig_active_units),
    "likelihood.png": ("Test ELBO per epoch for both models, with the final importance-weighted bound where measured.", fig_likelihood),
    "paper_nll_vs_depth.png": ("The paper's depth sweep: test NLL against the number of stochastic layers, four models.", fig_paper_depth),
    "paper_elbo_curves.png": ("Train and test ELBO per epoch, the 5-layer VAE against the LVAE.", fig_paper_elbo),
    "paper_kl_units.png": ("log KL of every latent unit against epochs (units sorted within each layer), VAE and LVAE.", fig_paper_kl_units),
    "paper_active_units.png": ("Active units per layer, the 5-layer VAE against the LVAE (the paper's table).", fig_paper_active_units),
    "paper_posterior_pca.png": ("PCA of posterior samples of each layer, coloured by digit, VAE and LVAE.", fig_paper_pca),
    "warmup_schedules.png": ("The three β schedules of the warm-up study: none, per iteration, per epoch.", fig_warmup_schedules),
    "warmup_effect.png": ("What each warm-up did to the paper's five-layer ladder: reconstruction, KL per layer, active units.", fig_warmup_effect),
    "encoder_latent_maps.png": ("The deterministic bottom-up pass: mean and log-variance maps of the spatial inner latent.", fig_encoder_maps),
    "precision_weighted_merge.png": ("Encoder, decoder-prior and merged Gaussians for three units of one digit.", fig_merge),
    "merge_weights.png": ("The encoder's weight in the merge against the log-variance gap, for every unit of a batch.", fig_merge_weights),
    "temperature.png": ("LVAE samples at temperatures 0.5, 0.8 and 1.", fig_temperature),
}


def save(fig: Figure, path: Path) -> Path:
    """PNG at the fixed dpi, with no timestamp in the metadata so an unchanged figure is byte-identical."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def build_figures(names: list[str] | None = None, out_dir: Path = FIGURES_DIR, results: Results | None = None) -> list[Path]:
    """Draw and save the named figures (all by default), training what they need first."""
    import matplotlib

    matplotlib.use("Agg")
    unknown = sorted(set(names or []) - set(FIGURES))
    if unknown:
        raise ConfigError(f"unknown figure(s) {', '.join(unknown)}; choose from: {', '.join(FIGURES)}")
    r = results or Results()
    written = []
    for name in names or list(FIGURES):
        t0 = time.perf_counter()
        torch.manual_seed(SEED)
        try:
            fig = FIGURES[name][1](r)
        except SkipFigure as e:
            print(f"skipped {name}: {e}", flush=True)
            continue
        path = save(fig, Path(out_dir) / name)
        print(f"wrote {path} ({time.perf_counter() - t0:.1f} s)", flush=True)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lvae.figures", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="figures to draw (default: all); see --list")
    p.add_argument("--out", type=Path, default=FIGURES_DIR, help="folder for the PNGs (default figures/)")
    p.add_argument("--list", action="store_true", help="list the figures and what each shows")
    a = p.parse_args(argv)
    if a.list:
        for name, (what, _) in FIGURES.items():
            print(f"{name:30s} {what}")
        return 0
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    t0 = time.perf_counter()
    try:
        build_figures(a.names or None, a.out)
    except (ConfigError, ckpt.CheckpointError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"all figures in {_duration(time.perf_counter() - t0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
