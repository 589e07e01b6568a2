"""Every config field walked: `validate`, `--set FIELD=VALUE` (`parse_setting`), `with_overrides`, the `train` flags.

`lvae.config` declares each field once (its type, default, help, flag and check: `setting`);
everything here reads those declarations, so a new field is checked, settable with `--set` and,
with a flag in its declaration, on the command line, without another line anywhere.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from lvae.config import LADDER, BetaSchedule, ConfigError, ModelConfig, ObjectiveConfig, RunConfig, TrainConfig

SECTIONS = {"model": ModelConfig, "objective": ObjectiveConfig, "objective.beta": BetaSchedule, "train": TrainConfig}


@dataclass(frozen=True)
class Setting:
    """One settable field: its dotted path, its type without `| None` (`kind`), its choices if a Literal, its declaration."""

    path: str
    kind: Any
    optional: bool
    choices: tuple[str, ...] | None
    meta: Any

    @property
    def label(self) -> str:
        return self.meta.get("label", self.path.rsplit(".", 1)[-1])


@functools.cache
def settings() -> tuple[Setting, ...]:
    """Every field a flag or `--set` may change (not the name, the layers, the image shape or a section), in declaration order."""
    found = []
    for prefix, cls in (("", RunConfig), *((f"{k}.", c) for k, c in SECTIONS.items())):
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
            kind = next(t for t in typing.get_args(hint) if t is not type(None)) if optional else hint
            choices = typing.get_args(kind) if typing.get_origin(kind) is Literal else None
            if f.name != "name" and (kind in (bool, int, float, str) or choices or kind == tuple[int, ...]):
                found.append(Setting(prefix + f.name, kind, optional, choices, f.metadata))
    return tuple(found)


def config_flags() -> list[Setting]:
    """The settings with a `train` flag (`lvae.cli` adds them to its parser)."""
    return [s for s in settings() if "flag" in s.meta]


def get(cfg: RunConfig, path: str) -> Any:
    obj: Any = cfg
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def put(cfg: RunConfig, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    setattr(get(cfg, ".".join(parents)) if parents else cfg, leaf, value)


# Fields that only the ladder reads: a flag that sets one for another model is refused, not ignored.
LADDER_ONLY_FIELDS = tuple(s.path for s in settings() if s.meta.get("only_for") == LADDER)


# ----------------------------------------------------------------------------- validation


def _positive_int(value: Any, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")


def _finite(value: Any, what: str, minimum: float | None = None) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{what} must be >= {minimum}, got {value!r}")


def check_setting(s: Setting, value: Any) -> None:
    """What the field's type and declared check say about `value`."""
    if value is None and s.optional:
        return
    what, check = s.label, s.meta.get("check")
    if s.choices is not None and value not in s.choices:
        raise ConfigError(f"unknown {what} {value!r}; choose one of {s.choices}")
    if s.kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{what} must be true or false, got {value!r}")
    if check == "positive":
        _positive_int(value, what)
    elif check == "seed":  # torch, numpy and Python all take it: 0 <= seed < 2**63
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
            raise ConfigError(f"{what} must be an integer from 0 to 2**63 - 1, got {value!r}")
    elif check in (">=0", ">0"):
        _finite(value, what, 0.0 if check == ">=0" else None)
        if check == ">0" and value <= 0:
            raise ConfigError(f"{what} must be > 0{' (or left unset)' if s.optional else ''}, got {value!r}")


def validate(cfg: RunConfig) -> None:
    """Refuse impossible configurations before any work is done: every field as declared, then how they fit together."""
    m = cfg.model
    if m.depth < 1:
        raise ConfigError("the model needs at least one latent layer (model.layers is empty)")
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
    for s in settings():
        check_setting(s, get(cfg, s.path))
    o, b, t = cfg.objective, cfg.objective.beta, cfg.train
    if o.kl_mode == "seed" and cfg.model_kind != "lvae":
        raise ConfigError(f"kl_mode 'seed' pulls the ladder's merged posterior towards its encoder; "
                          f"a {cfg.model_kind!r} model has no merge: use kl_mode 'paper'")
    if b.kind != "constant" and b.end < b.start:
        raise ConfigError(f"beta warm-up must rise: start {b.start} is above end {b.end}")
    if o.bound == "elbo" and o.iw_samples != 1:
        raise ConfigError(f"--iw-train {o.iw_samples} needs --objective iw: the ELBO draws one sample per image")
    if o.bound == "iw" and o.kl_mode != "paper":
        raise ConfigError(f"--objective iw weighs log p(x, z) - log q(z | x), the paper's terms; kl_mode {o.kl_mode!r} "
                          f"is not a bound: use --kl-mode paper")
    if o.bound == "iw" and o.free_bits > 0:
        raise ConfigError("free bits clamp each layer's KL, which the importance-weighted bound never forms: "
                          "use --free-bits 0 with --objective iw")
    if t.lr_schedule == "cosine" and t.lr_min > t.lr:
        raise ConfigError(f"the cosine schedule anneals from --lr {t.lr:g} down to --lr-min {t.lr_min:g}, which is higher: "
                          f"it would raise the learning rate; give an --lr-min below --lr")
    if t.lr_schedule == "cosine" and t.lr_min == 0 and t.epochs > t.horizon:
        # Past its horizon the cosine holds lr_min; at 0 every extra epoch would leave the weights as they are.
        raise ConfigError(f"{t.epochs} epochs go past the {t.horizon} that this run's cosine learning rate was laid out over "
                          f"when it started, and past them the rate stays at --lr-min 0: the extra epochs would not train. "
                          f"The schedule is fixed so that a resume never rewrites the rates already used; "
                          f"train at most {t.horizon} epochs, or start a new run with --epochs {t.epochs}")
    if t.limit is not None and t.batch_size > t.limit:
        raise ConfigError(f"batch size {t.batch_size} is larger than the data (--limit {t.limit}); lower --batch-size")
    for e in t.keep_epochs:
        _positive_int(e, "each of keep_epochs")
    if not (t.device == "cpu" or t.device.startswith("cuda")):
        raise ConfigError(f"unknown device {t.device!r}; choose 'cpu' or 'cuda'")
    if t.ema_decay is not None and not (isinstance(t.ema_decay, (int, float)) and 0 < t.ema_decay < 1):
        raise ConfigError(f"ema_decay must lie strictly between 0 and 1 (e.g. 0.999), or be unset; got {t.ema_decay!r}")


# ----------------------------------------------------------------------------- setting fields by name


def parse_setting(cfg: RunConfig, assignment: str) -> tuple[str, Any]:
    """`"model.var_floor=1e-4"` -> ("model.var_floor", 1e-4), the value read as the field's type says
    (bool: true/false; none: unset, where the field allows it; a choice: one of the field's Literal values)."""
    path, sep, text = assignment.partition("=")
    if not sep:
        raise ConfigError(f"--set {assignment!r}: write FIELD=VALUE, e.g. --set model.var_floor=1e-4")
    section, _, leaf = path.rpartition(".")
    if section and section not in SECTIONS:
        raise ConfigError(f"no setting {path!r}: {section.split('.')[0]!r} is not a section; sections are {', '.join(SECTIONS)}")
    known = {s.path: s for s in settings() if s.path.rpartition(".")[0] == section and s.kind != tuple[int, ...]}
    if path not in known:
        raise ConfigError(f"no setting {path!r}; {section or 'the top'} has {', '.join(p.rpartition('.')[2] for p in known)}")
    s = known[path]
    if text.lower() in ("none", "null"):
        if s.optional:
            return path, None
        raise ConfigError(f"--set {path}=none: this field cannot be unset")
    if s.choices is not None:
        if text in s.choices:
            return path, text
        raise ConfigError(f"--set {path}={text}: choose one of {', '.join(s.choices)}")
    if s.kind is bool:
        if text.lower() in ("true", "false"):
            return path, text.lower() == "true"
        raise ConfigError(f"--set {path}={text}: write true or false")
    if s.kind in (int, float):
        try:
            return path, s.kind(text)
        except ValueError:
            raise ConfigError(f"--set {path}={text}: not {'an integer' if s.kind is int else 'a number'}") from None
    return path, text


def with_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Set dotted fields (`"train.epochs": 10`) on `cfg` in place, validate, and return it."""
    for path, value in overrides.items():
        put(cfg, path, value)
    validate(cfg)
    return cfg
