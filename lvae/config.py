"""Typed, JSON-serialisable configuration for models, warm-up and training.

Configs are plain data: every run writes its `RunConfig` to `config.json`, and a
checkpoint carries it too, so a run always says how it was made.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

LayerKind = Literal["conv", "dense"]
Likelihood = Literal["gaussian", "bernoulli"]
KLMode = Literal["paper", "seed"]
ScheduleKind = Literal["linear_iter", "linear_epoch", "constant"]
ModelKind = Literal["lvae", "hvae", "top-vae"]
LRSchedule = Literal["constant", "cosine"]
DatasetName = Literal["mnist", "fashion-mnist"]
LadderUp = Literal["features", "mean"]
LadderInference = Literal["shared", "separate"]
LadderMerge = Literal["precision", "concat", "bottom-up"]
Bound = Literal["elbo", "iw"]

LIKELIHOODS = ("gaussian", "bernoulli")
KL_MODES = ("paper", "seed")
SCHEDULE_KINDS = ("linear_iter", "linear_epoch", "constant")
MODEL_KINDS = ("lvae", "hvae", "top-vae")
# Runs made before the hierarchical VAE existed called the top-latent VAE "vae".
LEGACY_MODEL_KINDS = {"vae": "top-vae"}
LR_SCHEDULES = ("constant", "cosine")
DATASETS = ("mnist", "fashion-mnist")
AMP_MODES = ("off", "bf16")
LADDER_UPS = ("features", "mean")
LADDER_INFERENCES = ("shared", "separate")
LADDER_MERGES = ("precision", "concat", "bottom-up")
BOUNDS = ("elbo", "iw")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message says which and why."""


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
    """A ladder of `layers`, bottom (next to the data) first."""

    layers: list[LayerSpec]
    image_shape: tuple[int, int, int] = (1, 28, 28)
    likelihood: Likelihood = "gaussian"
    batch_norm: bool = False
    # Variances are softplus(raw) + var_floor: never zero, so precisions stay finite.
    var_floor: float = 1e-4
    # Gaussian likelihood: fixed output variance. 0.5 makes -log p(x|z) equal the
    # summed squared error plus a constant, i.e. the seed's MSE loss.
    output_variance: float = 0.5
    # The choices below are where the paper's code (casperkaae/LVAE, run_models.py) differs from
    # its text or from this repo's first ladder; the defaults keep the older runs reproducible and
    # `paper_config` takes the code's (docs/fidelity.md lists each one).
    # Slope of the LeakyReLU below zero (Lasagne's leaky_rectify, the paper code's: 0.01).
    leaky_slope: float = 0.1
    # Batch norm also on the mean and variance heads (before the softplus), as the paper code does.
    head_batch_norm: bool = False
    # Ladder only: what up_k reads from the rung below, its features d_{k-1} (the paper's text) or
    # its encoder mean mu_hat_{k-1} (the code's `only_mu_up`, on by default there).
    ladder_up: LadderUp = "features"
    # Ladder only: whether the inference top-down path that q_hat is merged with is the generative
    # prior itself ("shared", the paper's text) or a copy with its own weights ("separate", the
    # code's default `ladder_share_params False`).
    ladder_inference: LadderInference = "shared"
    # Ladder only: how q(z_k | z_{k+1}, x) is formed below the top. "precision": the paper's precision-weighted
    # merge of q_hat with the top-down Gaussian; "concat": a learned combination, a Gaussian head on the
    # concatenated bottom-up and top-down features (addtt/ladder-vae-pytorch's design); "bottom-up": q = q_hat,
    # no top-down information in q at all (the generative model unchanged). The factor study measures them.
    ladder_merge: LadderMerge = "precision"

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

    kind: ScheduleKind = "linear_iter"
    start: float = 1e-4
    end: float = 0.5
    steps: int | None = None


@dataclass
class ObjectiveConfig:
    kl_mode: KLMode = "paper"
    beta: BetaSchedule = field(default_factory=BetaSchedule)
    # Free bits (nats) per layer: a layer's KL below this is not penalised.
    free_bits: float = 0.0
    # What training maximises: "elbo", or "iw", the importance-weighted bound on `iw_samples` draws per
    # image (Burda et al., 2016; the paper's fine-tuning phase uses K = 10). Under a warm-up, beta scales
    # log p(z) - log q(z) inside each log-weight, as the paper's code does (lvae.losses.iw_loss).
    bound: Bound = "elbo"
    iw_samples: int = 1

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
    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    # "cosine": anneal from `lr` to `lr_min` over the run, per iteration; "constant": `lr` throughout.
    lr_schedule: LRSchedule = "constant"
    lr_min: float = 0.0
    # The epochs the cosine lr and a whole-run beta warm-up (steps=None) are laid out over, fixed
    # when the run starts: a resumed run's new `epochs` moves where training stops, never the
    # rates and betas it has already used. None: not fixed yet (a fresh run takes `epochs`, a
    # resumed one its checkpoint's); see `horizon`.
    schedule_epochs: int | None = None
    seed: int = 0
    device: str = "cpu"
    dataset: DatasetName = "mnist"
    limit: int | None = None
    grad_clip: float | None = None
    # After the norm clip, each gradient element clipped to [-v, v] (the paper code: norm 4, then 0.9).
    grad_clip_value: float | None = None
    adam_eps: float = 1e-8
    # Before each test evaluation, batch-norm statistics recomputed from the whole training set
    # (the paper code's `f_collect`) instead of the running averages kept during training.
    bn_recompute: bool = False
    # Epochs (1-based, counted at their end) whose weights are kept as RUN/epoch-NNNN.pt, for
    # scoring a run at several training budgets (`python -m lvae evaluate RUN --epoch N`).
    keep_epochs: tuple[int, ...] = ()
    # The test pass (batch-norm recompute, test ELBO into epochs.jsonl) runs every this many epochs,
    # and always after a kept epoch and the last one. It draws its noise from a generator of its own,
    # so skipping it leaves the training trajectory bit for bit as it was; it costs about 40 % of a
    # 5-layer `paper` epoch on one CPU thread.
    test_every: int = 1
    # The run (or weights file) whose weights this run started from (`train --finetune`); None: a fresh start.
    finetune_from: str | None = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    # Speed options (lvae.speed.speed_options measures them): bf16 autocast of the model's
    # forward pass (the loss stays float32) and torch.compile of the model.
    amp: str = "off"
    compile: bool = False
    # Evaluate and save an exponential moving average of the weights (decay per optimizer step,
    # batch-norm statistics averaged too) instead of the last step's; None: the raw weights.
    ema_decay: float | None = None

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
    model_kind: ModelKind
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


# ----------------------------------------------------------------------------- named configs


def seed_config() -> RunConfig:
    """The original author's model: conv encoder, spatial inner latent, dense top latent."""
    return RunConfig(
        name="seed",
        model_kind="lvae",
        model=ModelConfig(
            layers=[
                LayerSpec("conv", (16, 32), latent=8),  # 28x28 -> 7x7x8 spatial latent
                LayerSpec("dense", (256,), latent=16),  # dense top latent
            ],
            likelihood="gaussian",
        ),
        objective=ObjectiveConfig(kl_mode="paper", beta=BetaSchedule("linear_iter", 1e-4, 0.5, None)),
        train=TrainConfig(epochs=3, batch_size=128, lr=1e-3),
    )


def paper_config() -> RunConfig:
    """Sønderby et al. (2016), MNIST: a five-layer MLP ladder, Bernoulli likelihood, set up as the
    paper's code (casperkaae/LVAE) trains it wherever code and text differ (docs/fidelity.md)."""
    widths = (512, 256, 128, 64, 32)
    latents = (64, 32, 16, 8, 4)
    return RunConfig(
        name="paper",
        model_kind="lvae",
        model=ModelConfig(
            layers=[LayerSpec("dense", (w, w), latent=z) for w, z in zip(widths, latents)],
            likelihood="bernoulli",
            batch_norm=True,
            **PAPER_CODE_MODEL,
        ),
        objective=ObjectiveConfig(kl_mode="paper", beta=BetaSchedule("linear_epoch", 0.0, 1.0, 20)),
        train=TrainConfig(epochs=100, batch_size=256, lr=2e-3, **PAPER_CODE_TRAIN),
    )


# What run_models.py does where the paper's text is silent or says otherwise (docs/fidelity.md).
PAPER_CODE_MODEL: dict[str, Any] = dict(var_floor=1e-5, leaky_slope=0.01, head_batch_norm=True,
                                        ladder_up="mean", ladder_inference="separate")
PAPER_CODE_TRAIN: dict[str, Any] = dict(grad_clip=4.0, grad_clip_value=0.9, adam_eps=1e-4, bn_recompute=True)
# This repo's first `paper` setup, before the code's choices were adopted: what results/paper-best-v1.json,
# results/paper-ablations.json and results/paper-v1/ were trained with.
FIRST_SETUP_MODEL: dict[str, Any] = dict(var_floor=1e-4, leaky_slope=0.1, head_batch_norm=False,
                                         ladder_up="features", ladder_inference="shared")
FIRST_SETUP_TRAIN: dict[str, Any] = dict(grad_clip=None, grad_clip_value=None, adam_eps=1e-8, bn_recompute=False)


def with_first_setup(cfg: RunConfig) -> RunConfig:
    """`cfg` with this repo's first setup in place of the paper code's choices (docs/fidelity.md), in place."""
    for key, value in FIRST_SETUP_MODEL.items():
        setattr(cfg.model, key, value)
    for key, value in FIRST_SETUP_TRAIN.items():
        setattr(cfg.train, key, value)
    return cfg


PAPER_BEST_WIDTHS = (1024, 512, 256, 128, 64)
PAPER_BEST_V1_EPOCHS = 160
PAPER_BEST_EPOCHS = 300  # the main stage of `make paper-best` (lvae/experiments/paper_best.py adds the fine-tuning stages)


def widened(cfg: RunConfig, widths: tuple[int, ...]) -> RunConfig:
    """`cfg` with its rungs' hidden widths replaced (the latents stay), in place."""
    cfg.model.layers = [LayerSpec("dense", (w, w), latent=spec.latent) for w, spec in zip(widths, cfg.model.layers)]
    return cfg


def paper_best_v1_config() -> RunConfig:
    """The first `paper-best` (results/paper-best-v1.json, 82.34 nats): the `paper` ladder on this repo's
    first setup plus what the ablation table (results/paper-ablations.json) kept at equal budget, image
    by image over two seeds: layers twice as wide and a cosine learning rate from 2e-3 to 0, for as many
    epochs as trained within 60 minutes on 2 threads."""
    cfg = widened(with_first_setup(paper_config()), PAPER_BEST_WIDTHS)
    cfg.name = "paper-best-v1"
    cfg.train.lr_schedule = "cosine"
    cfg.train.epochs = PAPER_BEST_V1_EPOCHS
    return cfg


def paper_best_config() -> RunConfig:
    """The main stage of `make paper-best`: the `paper` ladder as the paper's code trains it (the setup that
    moved the 5-layer sweep's ladder by 0.65 nats, docs/fidelity.md), twice as wide, cosine learning rate
    from 2e-3 down to 2e-4 over 300 epochs, its forward pass in bf16 autocast and scored with a moving average
    of its weights (both kept by the paired ablation at an equal CPU time, 6 seeds: results/paper-ablations-cpu.json);
    the fine-tuning stages continue from there (from the average)."""
    cfg = widened(paper_config(), PAPER_BEST_WIDTHS)
    cfg.name = "paper-best"
    cfg.train.lr_schedule, cfg.train.lr_min = "cosine", 2e-4
    cfg.train.amp, cfg.train.ema_decay = "bf16", 0.999
    cfg.train.epochs = PAPER_BEST_EPOCHS
    return cfg


def paper_best_narrow_config() -> RunConfig:
    """The `paper-best` recipe on the paper's own widths (512 ... 32): what the recipe buys without the width."""
    cfg = widened(paper_best_config(), tuple(spec.channels[0] for spec in paper_config().model.layers))
    cfg.name = "paper-best-narrow"
    return cfg


NAMED_CONFIGS = {"seed": seed_config, "paper": paper_config, "paper-best": paper_best_config,
                 "paper-best-narrow": paper_best_narrow_config, "paper-best-v1": paper_best_v1_config}


def named_config(name: str) -> RunConfig:
    if name not in NAMED_CONFIGS:
        raise ConfigError(f"unknown config {name!r}; choose one of {sorted(NAMED_CONFIGS)}")
    return NAMED_CONFIGS[name]()


# ----------------------------------------------------------------------------- validation


# Fields that only the ladder reads: a flag that sets one for another model is refused, not ignored.
LADDER_ONLY_FIELDS = ("model.ladder_up", "model.ladder_inference", "model.ladder_merge")


def _positive_int(value: Any, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")


def _finite(value: Any, what: str, minimum: float | None = None) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{what} must be >= {minimum}, got {value!r}")


def validate(cfg: RunConfig) -> None:
    """Refuse impossible configurations before any work is done."""
    m = cfg.model
    if m.depth < 1:
        raise ConfigError("the model needs at least one latent layer (model.layers is empty)")
    if cfg.model_kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {cfg.model_kind!r}; choose one of {MODEL_KINDS}")
    if m.likelihood not in LIKELIHOODS:
        raise ConfigError(f"unknown likelihood {m.likelihood!r}; choose one of {LIKELIHOODS}")
    seen_dense = False
    c, h, w = m.image_shape
    for i, layer in enumerate(m.layers):
        if layer.kind not in ("conv", "dense"):
            raise ConfigError(f"layer {i}: unknown kind {layer.kind!r}; choose 'conv' or 'dense'")
        if not layer.channels:
            raise ConfigError(f"layer {i}: 'channels' is empty; give at least one width")
        for ch in layer.channels:
            _positive_int(ch, f"layer {i} channel/width")
        _positive_int(layer.latent, f"layer {i} latent size")
        if layer.kind == "dense":
            seen_dense = True
        elif seen_dense:
            raise ConfigError(f"layer {i}: a conv layer cannot sit above a dense one; put conv layers at the bottom")
        else:
            for _ in layer.channels:
                if h % 2 or w % 2:
                    raise ConfigError(f"layer {i}: cannot halve a {h}x{w} feature map; use fewer conv stages")
                h, w = h // 2, w // 2
    _finite(m.var_floor, "model.var_floor", 0.0)
    if m.var_floor <= 0:
        raise ConfigError("model.var_floor must be > 0 so variances never reach zero")
    _finite(m.leaky_slope, "model.leaky_slope", 0.0)
    if m.ladder_up not in LADDER_UPS:
        raise ConfigError(f"unknown model.ladder_up {m.ladder_up!r}; choose one of {LADDER_UPS}")
    if m.ladder_inference not in LADDER_INFERENCES:
        raise ConfigError(f"unknown model.ladder_inference {m.ladder_inference!r}; choose one of {LADDER_INFERENCES}")
    if m.ladder_merge not in LADDER_MERGES:
        raise ConfigError(f"unknown model.ladder_merge {m.ladder_merge!r}; choose one of {LADDER_MERGES}")
    if not isinstance(m.head_batch_norm, bool):
        raise ConfigError(f"model.head_batch_norm must be true or false, got {m.head_batch_norm!r}")
    _finite(m.output_variance, "model.output_variance")
    if m.output_variance <= 0:
        raise ConfigError("model.output_variance must be > 0")
    o = cfg.objective
    if o.kl_mode not in KL_MODES:
        raise ConfigError(f"unknown kl_mode {o.kl_mode!r}; choose one of {KL_MODES}")
    if o.kl_mode == "seed" and cfg.model_kind != "lvae":
        raise ConfigError(f"kl_mode 'seed' pulls the ladder's merged posterior towards its encoder; "
                          f"a {cfg.model_kind!r} model has no merge: use kl_mode 'paper'")
    b = o.beta
    if b.kind not in SCHEDULE_KINDS:
        raise ConfigError(f"unknown beta schedule {b.kind!r}; choose one of {SCHEDULE_KINDS}")
    _finite(b.start, "beta start", 0.0)
    _finite(b.end, "beta end", 0.0)
    if b.steps is not None:
        _positive_int(b.steps, "beta schedule steps (the warm-up must end after it starts)")
    if b.kind != "constant" and b.end < b.start:
        raise ConfigError(f"beta warm-up must rise: start {b.start} is above end {b.end}")
    _finite(o.free_bits, "free_bits", 0.0)
    if o.bound not in BOUNDS:
        raise ConfigError(f"unknown objective {o.bound!r}; choose one of {BOUNDS}")
    _positive_int(o.iw_samples, "the importance samples per image (--iw-train)")
    if o.bound == "elbo" and o.iw_samples != 1:
        raise ConfigError(f"--iw-train {o.iw_samples} needs --objective iw: the ELBO draws one sample per image")
    if o.bound == "iw" and o.kl_mode != "paper":
        raise ConfigError(f"--objective iw weighs log p(x, z) - log q(z | x), the paper's terms; kl_mode {o.kl_mode!r} "
                          f"is not a bound: use --kl-mode paper")
    if o.bound == "iw" and o.free_bits > 0:
        raise ConfigError("free bits clamp each layer's KL, which the importance-weighted bound never forms: "
                          "use --free-bits 0 with --objective iw")
    t = cfg.train
    _positive_int(t.epochs, "epochs")
    _positive_int(t.batch_size, "batch size")
    _finite(t.lr, "learning rate")
    if t.lr <= 0:
        raise ConfigError(f"learning rate must be > 0, got {t.lr!r}")
    if t.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"unknown lr schedule {t.lr_schedule!r}; choose one of {LR_SCHEDULES}")
    _finite(t.lr_min, "lr_min", 0.0)
    if t.lr_schedule == "cosine" and t.lr_min > t.lr:
        raise ConfigError(f"the cosine schedule anneals from --lr {t.lr:g} down to --lr-min {t.lr_min:g}, which is higher: "
                          f"it would raise the learning rate; give an --lr-min below --lr")
    if t.schedule_epochs is not None:
        _positive_int(t.schedule_epochs, "schedule_epochs")
    if t.lr_schedule == "cosine" and t.lr_min == 0 and t.epochs > t.horizon:
        # Past its horizon the cosine holds lr_min; at 0 every extra epoch would leave the weights as they are.
        raise ConfigError(f"{t.epochs} epochs go past the {t.horizon} that this run's cosine learning rate was laid out over "
                          f"when it started, and past them the rate stays at --lr-min 0: the extra epochs would not train. "
                          f"The schedule is fixed so that a resume never rewrites the rates already used; "
                          f"train at most {t.horizon} epochs, or start a new run with --epochs {t.epochs}")
    if t.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {t.dataset!r}; choose one of {DATASETS}")
    if t.limit is not None:
        _positive_int(t.limit, "limit")
        if t.batch_size > t.limit:
            raise ConfigError(f"batch size {t.batch_size} is larger than the data (--limit {t.limit}); lower --batch-size")
    if t.grad_clip is not None:
        _finite(t.grad_clip, "grad_clip")
        if t.grad_clip <= 0:
            raise ConfigError("grad_clip must be > 0 (or left unset)")
    if t.grad_clip_value is not None:
        _finite(t.grad_clip_value, "grad_clip_value")
        if t.grad_clip_value <= 0:
            raise ConfigError("grad_clip_value must be > 0 (or left unset)")
    _finite(t.adam_eps, "adam_eps")
    if t.adam_eps <= 0:
        raise ConfigError(f"adam_eps must be > 0, got {t.adam_eps!r}")
    if not isinstance(t.bn_recompute, bool):
        raise ConfigError(f"bn_recompute must be true or false, got {t.bn_recompute!r}")
    for e in t.keep_epochs:
        _positive_int(e, "each of keep_epochs")
    _positive_int(t.checkpoint_every, "checkpoint_every")
    _positive_int(t.test_every, "test_every")
    _positive_int(t.keep_checkpoints, "keep_checkpoints")
    if not (t.device == "cpu" or t.device.startswith("cuda")):
        raise ConfigError(f"unknown device {t.device!r}; choose 'cpu' or 'cuda'")
    if t.amp not in AMP_MODES:
        raise ConfigError(f"unknown amp mode {t.amp!r}; choose one of {AMP_MODES} (float16 would need loss scaling)")
    if not isinstance(t.compile, bool):
        raise ConfigError(f"compile must be true or false, got {t.compile!r}")
    if t.ema_decay is not None and not (isinstance(t.ema_decay, (int, float)) and 0 < t.ema_decay < 1):
        raise ConfigError(f"ema_decay must lie strictly between 0 and 1 (e.g. 0.999), or be unset; got {t.ema_decay!r}")


def _field_type(cfg: RunConfig, path: str) -> Any:
    """The type hint of dotted field `path`; ConfigError if there is no such field."""
    import typing

    *parents, leaf = path.split(".")
    obj: Any = cfg
    for p in parents:
        if not dataclasses.is_dataclass(obj) or p not in {f.name for f in dataclasses.fields(obj)}:
            raise ConfigError(f"no setting {path!r}: {p!r} is not a section; sections are model, objective, objective.beta, train")
        obj = getattr(obj, p)
    hints = typing.get_type_hints(type(obj)) if dataclasses.is_dataclass(obj) else {}
    settable = [h for h in hints if h not in ("layers", "image_shape", "keep_epochs", "beta")]
    if leaf not in settable:
        raise ConfigError(f"no setting {path!r}; {'.'.join(parents) or 'the top'} has {', '.join(settable)}")
    return hints[leaf]


def parse_setting(cfg: RunConfig, assignment: str) -> tuple[str, Any]:
    """`"model.var_floor=1e-4"` -> ("model.var_floor", 1e-4), the value read as the field's type says
    (bool: true/false; none: unset, where the field allows it; a choice: one of the field's Literal values)."""
    import types
    import typing

    path, sep, text = assignment.partition("=")
    if not sep:
        raise ConfigError(f"--set {assignment!r}: write FIELD=VALUE, e.g. --set model.var_floor=1e-4")
    hint = _field_type(cfg, path)
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = [t for t in typing.get_args(hint) if t is not type(None)] if union else [hint]
    if text.lower() in ("none", "null"):
        if union and type(None) in typing.get_args(hint):
            return path, None
        raise ConfigError(f"--set {path}=none: this field cannot be unset")
    kind = options[0]
    if typing.get_origin(kind) is Literal:
        if text in typing.get_args(kind):
            return path, text
        raise ConfigError(f"--set {path}={text}: choose one of {', '.join(typing.get_args(kind))}")
    if kind is bool:
        if text.lower() in ("true", "false"):
            return path, text.lower() == "true"
        raise ConfigError(f"--set {path}={text}: write true or false")
    if kind in (int, float):
        try:
            return path, kind(text)
        except ValueError:
            raise ConfigError(f"--set {path}={text}: not {'an integer' if kind is int else 'a number'}") from None
    return path, text


def with_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Set dotted fields (`"train.epochs": 10`) on `cfg` in place, validate, and return it."""
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        obj: Any = cfg
        for p in parents:
            obj = getattr(obj, p)
        setattr(obj, leaf, value)
    validate(cfg)
    return cfg
