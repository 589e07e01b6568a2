"""KL warm-up and learning rate: pure functions of (iteration, epoch), so resuming is exact.

A cosine learning rate, or a warm-up with `steps=None`, is laid out over the run's horizon
(`TrainConfig.horizon`): the epochs fixed when the run started, not the epochs it happens to
stop at. A resumed run that trains longer or shorter therefore never rewrites the part of a
schedule it has already used; past the horizon both schedules hold their final value.
"""

from __future__ import annotations

import math

from lvae.config import BetaSchedule, RunConfig, TrainConfig


def beta_at(schedule: BetaSchedule, iteration: int, epoch: int, total_iterations: int, total_epochs: int) -> float:
    """beta for the `iteration`-th step (0-based) of the run, in epoch `epoch` (0-based).

    `steps=None` means the warm-up spans the run's horizon: `total_iterations` or
    `total_epochs` (the schedule's length, not necessarily where training stops); after
    the warm-up beta stays at `end`.
    """
    if schedule.kind == "constant":
        return float(schedule.end)
    if schedule.kind == "linear_iter":
        steps, t = schedule.steps or total_iterations, iteration
    elif schedule.kind == "linear_epoch":
        steps, t = schedule.steps or total_epochs, epoch
    else:
        raise ValueError(f"unknown beta schedule {schedule.kind!r}")
    frac = min(1.0, t / max(1, steps - 1)) if steps > 1 else 1.0
    return float(schedule.start + frac * (schedule.end - schedule.start))


def beta_curve(schedule: BetaSchedule, iterations_per_epoch: int, epochs: int) -> list[float]:
    """beta at every iteration of a run: what the warm-up slider draws."""
    total = iterations_per_epoch * epochs
    return [beta_at(schedule, i, i // iterations_per_epoch, total, epochs) for i in range(total)]


def lr_at(train: TrainConfig, iteration: int, total_iterations: int) -> float:
    """Learning rate for the `iteration`-th step: a pure function, so resuming is exact.

    The cosine falls from `lr` to `lr_min` over `total_iterations` (the run's horizon) and
    stays at `lr_min` after it.
    """
    if train.lr_schedule == "constant":
        return float(train.lr)
    if train.lr_schedule == "cosine":
        frac = min(1.0, iteration / max(1, total_iterations))
        return float(train.lr_min + 0.5 * (train.lr - train.lr_min) * (1.0 + math.cos(math.pi * frac)))
    raise ValueError(f"unknown lr schedule {train.lr_schedule!r}")


def horizon_schedules(cfg: RunConfig) -> list[str]:
    """The schedules of `cfg` that are laid out over its horizon, in words (empty: none is)."""
    names = ["the cosine learning rate"] if cfg.train.lr_schedule == "cosine" else []
    beta = cfg.objective.beta
    if beta.kind != "constant" and beta.steps is None:
        names.append("the β warm-up")
    return names
