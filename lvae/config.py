"""Typed, JSON-serialisable configuration: the model, the objective with its KL warm-up, and training.

Configs are plain data: every run writes its `RunConfig` to `config.json`, and a checkpoint
carries it too, so a run always says how it was made.

Each setting is declared once, as its field: its default, its help, and, where the command line
sets it, its flag (`setting(..., flag="--lr")`); its type says what it accepts (a `Literal` lists
the choices). `lvae.settings` reads these declarations: `validate` checks every field's choice,
type and sign, `--set FIELD=VALUE` (`parse_setting`) reaches every field, and `lvae.cli` builds
the `train` flags from them (`config_flags`). The named recipes (`seed`, `paper`, `paper-best` ...)
are differences from these defaults, in `lvae.recipes`.

Field groups
  RunConfig        name, model_kind, and the three sections below
  ModelConfig      the ladder: layers (LayerSpec: kind, channels, latent), image_shape; the likelihood:
                   likelihood, output_variance; the blocks: batch_norm, head_batch_norm, leaky_slope,
                   var_floor; the ladder's inference (ladder only): ladder_up, ladder_inference, ladder_merge
  ObjectiveConfig  the bound: kl_mode, free_bits, bound, iw_samples; its KL warm-up `beta`
                   (BetaSchedule: kind, start, end, steps)
  TrainConfig      length and data: epochs, batch_size, dataset, limit, seed; the optimizer: lr,
                   lr_schedule, lr_min, schedule_epochs, adam_eps, grad_clip, grad_clip_value, ema_decay;
                   the test pass: test_every, bn_recompute; the run's files: checkpoint_every,
                   keep_checkpoints, keep_epochs, finetune_from; speed: device, amp, compile
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal

LayerKind = Literal["conv", "dense"]
Likelihood = Literal["gaussian", "bernoulli"]
KLMode = Literal["paper", "seed"]
ScheduleKind = Literal["linear_iter", "linear_epoch", "constant"]
ModelKind = Literal["lvae", "hvae", "top-vae"]
LRSchedule = Literal["constant", "cosine"]
DatasetName = Literal["mnist", "fashion-mnist"]
AmpMode = Literal["off", "bf16"]
LadderUp = Literal["features", "mean"]
LadderInference = Literal["shared", "separate"]
LadderMerge = Literal["precision", "concat", "bottom-up"]
Bound = Literal["elbo", "iw"]

MODEL_KINDS: tuple[str, ...] = typing.get_args(ModelKind)
DATASETS: tuple[str, ...] = typing.get_args(DatasetName)
# Runs made before the hierarchical VAE existed called the top-latent VAE "vae".
LEGACY_MODEL_KINDS = {"vae": "top-vae"}


class ConfigError(ValueError):
    """A configuration value that cannot work; the message says which and why."""


def setting(default: Any = MISSING, help: str = "", *, flag: str | None = None, label: str | None = None,
            check: str | None = None, metavar: str | None = None, only_for: tuple[str, ...] | None = None,
            factory: Any = None) -> Any:
    """A config field, declared with all that the command line and `validate` need to know about it.

    flag: the `train` flag that sets it (none: `--set FIELD=VALUE` only); label: its name in error
    messages (default: the field's); check: "positive" (an integer >= 1), ">0" or ">=0" (a finite
    number), "seed" (0 .. 2**63 - 1), on top of what its type says; only_for: the model kinds that read it (another refuses it).
    """
    meta = {k: v for k, v in dict(help=help, flag=flag, label=label, check=check, metavar=metavar, only_for=only_for).items()
            if v is not None}
    return field(default_factory=factory, metadata=meta) if factory is not None else field(default=default, metadata=meta)


LADDER = ("lvae",)  # the model kinds with a ladder's inference (`only_for`)


# ----------------------------------------------------------------------------- model


@dataclass
class LayerSpec:
    """One rung of the ladder: a deterministic block, then a stochastic latent.

    conv:  `channels` are the block's stride-2 conv stages; the latent keeps the
           block's spatial shape with `latent` channels (the NVAE idea).
    dense: `channels` are the widths of the block's linear layers; the latent is a
           vector of `latent` units.
    """

    kind: LayerKind
    channels: tuple[int, ...]
    latent: int

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)


@dataclass
class ModelConfig:
    """A ladder of `layers`, bottom (next to the data) first.

    The choices from `leaky_slope` on are where the paper's code (casperkaae/LVAE, run_models.py)
    differs from its text or from this repo's first ladder; the defaults keep the older runs
    reproducible and the `paper` recipe takes the code's (docs/fidelity.md lists each one).
    """

    layers: list[LayerSpec]
    image_shape: tuple[int, int, int] = (1, 28, 28)
    likelihood: Likelihood = setting("gaussian", "the output distribution p(x | z_1)")
    batch_norm: bool = setting(False, "batch norm in every block (paper: on)", flag="--batch-norm")
    var_floor: float = setting(1e-4, "variances are softplus(raw) + var_floor: never zero, so precisions stay finite",
                               label="model.var_floor", check=">0")
    output_variance: float = setting(0.5, "Gaussian likelihood: its fixed variance; 0.5 makes -log p(x|z) the summed squared "
                                     "error plus a constant (the seed's MSE loss)", label="model.output_variance", check=">0")
    leaky_slope: float = setting(0.1, "slope of the LeakyReLU below zero (the paper code's: 0.01)", label="model.leaky_slope", check=">=0")
    head_batch_norm: bool = setting(False, "batch norm also on the mean and variance heads (before the softplus), as the paper code",
                                    label="model.head_batch_norm")
    ladder_up: LadderUp = setting("features", "ladder: up_k reads the rung below's features (the paper's text) or its encoder mean "
                                  "(the code's only_mu_up)", flag="--ladder-up", label="model.ladder_up", only_for=LADDER)
    ladder_inference: LadderInference = setting(
        "shared", "ladder: merge q_hat with the prior itself (shared, the paper's text) or with an inference top-down path of "
        "its own (separate, the code's default)", flag="--ladder-inference", label="model.ladder_inference", only_for=LADDER)
    ladder_merge: LadderMerge = setting(
        "precision", "ladder: how q(z_k | z_k+1, x) is formed: the paper's precision-weighted merge of q_hat with the top-down "
        "Gaussian, a learned Gaussian head on the concatenated features (concat, addtt/ladder-vae-pytorch), or q = q_hat "
        "(bottom-up); the factor study measures them", label="model.ladder_merge", only_for=LADDER)

    def __post_init__(self) -> None:
        self.layers = [l if isinstance(l, LayerSpec) else LayerSpec(**l) for l in self.layers]
        self.image_shape = tuple(int(s) for s in self.image_shape)  # type: ignore[assignment]

    @property
    def depth(self) -> int:
        return len(self.layers)


# ----------------------------------------------------------------------------- objective


@dataclass
class BetaSchedule:
    """How the KL weight beta moves during training (the KL warm-up).

    linear_iter: from `start` to `end` over `steps` iterations (None: the whole run).
    linear_epoch: from `start` to `end` over `steps` epochs, constant within an epoch.
    constant: always `end`.
    """

    kind: ScheduleKind = setting("linear_iter", "KL warm-up shape; constant: beta = --beta-end throughout",
                                 flag="--beta-schedule", label="beta schedule")
    start: float = setting(1e-4, "the KL weight the warm-up starts from", label="beta start", check=">=0")
    end: float = setting(0.5, "final KL weight of the warm-up", flag="--beta-end", label="beta end", check=">=0")
    # Its flags name their unit and set `kind` with it (WARMUP_FLAGS).
    steps: int | None = setting(None, "length of the warm-up, in the unit `kind` counts (None: the whole run)",
                                label="beta schedule steps (the warm-up must end after it starts)", check="positive")


# The warm-up's length: each flag names its unit and sets the schedule's kind with it. `--warmup`
# (before the unit was named) counts what the config's schedule counts and says so on stderr.
WARMUP_FLAGS = {"--warmup-iterations": "linear_iter", "--warmup-epochs": "linear_epoch"}


@dataclass
class ObjectiveConfig:
    kl_mode: KLMode = setting("paper", "paper: a true ELBO; seed: the original author's variant (ladder only)", flag="--kl-mode")
    beta: BetaSchedule = setting(factory=BetaSchedule)
    free_bits: float = setting(0.0, "nats per layer below which KL is not penalised", flag="--free-bits", check=">=0")
    # Under a warm-up, beta scales log p(z) - log q(z) inside each log-weight, as the paper's code does (lvae.losses.iw_loss).
    bound: Bound = setting("elbo", "elbo, or iw: the importance-weighted bound on --iw-train draws per image (Burda et al., "
                           "2016; the paper's fine-tuning)", flag="--objective", label="objective")
    iw_samples: int = setting(1, "importance samples per image for --objective iw (the paper's fine-tuning: 10)",
                              flag="--iw-train", metavar="K", label="the importance samples per image (--iw-train)", check="positive")

    def __post_init__(self) -> None:
        if isinstance(self.beta, dict):
            self.beta = BetaSchedule(**self.beta)

    @property
    def draws(self) -> int:
        """Posterior draws per image in one training step."""
        return self.iw_samples if self.bound == "iw" else 1


# ----------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    epochs: int = setting(3, "epochs to train", flag="--epochs", check="positive")
    batch_size: int = setting(128, "images per optimizer step (over all processes)", flag="--batch-size", label="batch size", check="positive")
    lr: float = setting(1e-3, "learning rate (the cosine schedule's start)", flag="--lr", label="learning rate", check=">0")
    lr_schedule: LRSchedule = setting("constant", "constant, or cosine: anneal per iteration from --lr to --lr-min over the run",
                                      flag="--lr-schedule", label="lr schedule")
    lr_min: float = setting(0.0, "final learning rate of the cosine schedule", flag="--lr-min", check=">=0")
    # Fixed when the run starts, so a resumed run's new `epochs` moves where training stops, never the
    # rates and betas it has already used; see `horizon`.
    schedule_epochs: int | None = setting(None, "the epochs the cosine lr and a whole-run warm-up span (None: not fixed yet)",
                                          check="positive")
    seed: int = setting(0, "seed of the weights, the data order and the noise", flag="--seed", check="seed")
    device: str = setting("cpu", "cpu or cuda[:N]", flag="--device")
    dataset: DatasetName = setting("mnist", "dataset", flag="--data")
    limit: int | None = setting(None, "train on the first N images only", flag="--limit", check="positive")
    grad_clip: float | None = setting(None, "clip the gradient norm to this value", flag="--grad-clip", check=">0")
    grad_clip_value: float | None = setting(None, "after the norm clip, each gradient element clipped to [-v, v] (the paper "
                                            "code: norm 4, then 0.9)", check=">0")
    adam_eps: float = setting(1e-8, "Adam's epsilon (the paper code's 1e-4 damps the steps of parameters with tiny gradients)", check=">0")
    bn_recompute: bool = setting(False, "before each test pass, batch-norm statistics recomputed from the whole training set "
                                 "(the paper code's f_collect) instead of the running averages")
    keep_epochs: tuple[int, ...] = setting((), "keep the weights at the end of these epochs as RUN/epoch-NNNN.pt (score them with "
                                           "evaluate --epoch N)", flag="--keep-epochs", metavar="N")
    test_every: int = setting(1, "test ELBO every N epochs (and at kept epochs and the last); it draws its own noise, so training "
                              "is the same whatever N", flag="--test-every", metavar="N", check="positive")
    finetune_from: str | None = setting(None, "the run or weights file this run started from (train --finetune)")
    checkpoint_every: int = setting(500, "iterations between checkpoints", flag="--checkpoint-every", check="positive")
    keep_checkpoints: int = setting(2, "numbered checkpoints to keep", flag="--keep-checkpoints", check="positive")
    amp: AmpMode = setting("off", "bf16: autocast the model's forward pass to bfloat16, the loss in float32 (float16 would need "
                           "loss scaling)", flag="--amp", label="amp mode")
    compile: bool = setting(False, "torch.compile the model", flag="--compile")
    ema_decay: float | None = setting(None, "evaluate and save an exponential moving average of the weights, decay D per step "
                                      "(e.g. 0.999)", flag="--ema-decay", metavar="D")

    def __post_init__(self) -> None:
        self.keep_epochs = tuple(self.keep_epochs)

    @property
    def horizon(self) -> int:
        """The epochs the schedules span: `schedule_epochs` once the run has fixed it, else `epochs`."""
        return self.epochs if self.schedule_epochs is None else self.schedule_epochs


@dataclass
class RunConfig:
    """Everything that makes a run: saved as config.json and inside each checkpoint."""

    name: str
    model_kind: ModelKind = setting(help="lvae: the ladder; hvae: the paper's hierarchical VAE, the same stochastic layers "
                                    "inferred bottom-up; top-vae: one latent at the top of the same trunks", flag="--model",
                                    label="model kind")
    model: ModelConfig
    objective: ObjectiveConfig
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return cls(
            name=d["name"],
            model_kind=LEGACY_MODEL_KINDS.get(d["model_kind"], d["model_kind"]),
            model=ModelConfig(**d["model"]),
            objective=ObjectiveConfig(**d["objective"]),
            train=TrainConfig(**d["train"]),
        )

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


# Walking, checking and setting these fields (validate, parse_setting, with_overrides ...) is lvae.settings; the named
# recipes are lvae.recipes. Both stay importable from here, for the code that imports them from lvae.config.
_ELSEWHERE = {"settings": {"SECTIONS", "Setting", "settings", "config_flags", "get", "put", "LADDER_ONLY_FIELDS", "check_setting",
                           "validate", "parse_setting", "with_overrides"},
              "recipes": {"NAMED_CONFIGS", "named_config", "seed_config", "paper_config", "paper_best_config",
                          "paper_best_narrow_config", "paper_best_v1_config", "with_first_setup", "widened", "PAPER_CODE_MODEL",
                          "PAPER_CODE_TRAIN", "FIRST_SETUP_MODEL", "FIRST_SETUP_TRAIN", "PAPER_BEST_WIDTHS", "PAPER_BEST_EPOCHS",
                          "PAPER_BEST_V1_EPOCHS"}}


def __getattr__(name: str) -> Any:
    import importlib

    for module, names in _ELSEWHERE.items():
        if name in names:
            return getattr(importlib.import_module(f"lvae.{module}"), name)
    raise AttributeError(f"module 'lvae.config' has no attribute {name!r}")
