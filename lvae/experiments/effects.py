"""Paired effects between trained models, with error bars that include training noise, and the one
rule that turns an effect into a verdict.

Two models A and B are trained with the same S seeds and scored on the same N test images. For
seed s and image i, d_si = NLL_A(i) - NLL_B(i) (from the saved per-image log p(x)). Model the
difference as d_si = mu + tau_s + e_i + eps_si: tau_s is training noise (which seed), e_i the
image (shared by every seed: the test set is the same), eps_si the rest. The question is the
effect on this test set (the paper's numbers are on the MNIST test set), so e_i is part of what
is measured, not noise. The standard two-level formula:

    per-seed mean   m_s = (1/N) sum_i d_si                    (S numbers)
    effect          D   = (1/S) sum_s m_s
    SE^2                = sum_s (m_s - D)^2 / (S - 1) / S     (sample variance of the m_s, over S)
    interval            D +- t_{0.975, S-1} * SE              (df = S - 1)

for S >= 2. Each m_s already carries its image-level noise (eps_si averaged over N images), so
the spread of the m_s is the whole standard error; adding an image term on top would count that
noise twice. With three seeds t = 4.30: a wide interval, as it should be. With one seed training
noise is not measured at all: the interval falls back to the image-level one (the N differences'
standard error, df = N - 1), and every row says "one seed: training noise not measured".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from scipy import stats

CONFIDENCE = 0.95
MIN_SEEDS = 3  # a comparison between trained models rests on at least this many training seeds per arm


@dataclass(frozen=True)
class Effect:
    """A paired difference A - B over seeds and images, with its interval."""

    mean: float
    half_width: float  # of the CONFIDENCE interval
    seed_se: float  # the standard error from the spread of the per-seed means (0 with one seed: not measured)
    image_se: float  # the image-level standard error of the (seed-averaged) per-image differences: the interval's with one seed
    seeds: int
    per_seed: tuple[float, ...]

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def describe(self, digits: int = 2) -> str:
        """'-0.12 [-0.30, +0.06] (3 seeds; SE 0.07 across seeds)', or with one seed
        '-0.12 [-0.18, -0.06] (one seed: training noise not measured; image SE 0.03)'."""
        f = f"+.{digits}f"
        head = f"{self.mean:{f}} [{self.low:{f}}, {self.high:{f}}]"
        if self.seeds < 2:
            return f"{head} (one seed: training noise not measured; image SE {self.image_se:.{digits}f})"
        return f"{head} ({self.seeds} seeds; SE {self.seed_se:.{digits}f} across seeds)"


def paired_effect(per_seed_differences: Sequence[Sequence[float]]) -> Effect:
    """The effect of per-image differences, one sequence per seed, all over the same images in the same order:
    the two-level interval of the module docstring (df = S - 1; one seed: image level, df = N - 1)."""
    rows = [list(map(float, r)) for r in per_seed_differences]
    if not rows or any(len(r) != len(rows[0]) for r in rows) or len(rows[0]) < 2:
        raise ValueError("need at least one seed, every seed scored on the same images (at least 2)")
    s, n = len(rows), len(rows[0])
    seed_means = [sum(r) / n for r in rows]  # m_s
    mean = sum(seed_means) / s  # D
    image_means = [sum(col) / s for col in zip(*rows)]  # seed-averaged per-image differences
    image_se = math.sqrt(sum((x - mean) ** 2 for x in image_means) / (n - 1) / n)
    if s == 1:
        se, df = image_se, n - 1
    else:
        se, df = math.sqrt(sum((m - mean) ** 2 for m in seed_means) / (s - 1) / s), s - 1
    t = stats.t.ppf(0.5 + CONFIDENCE / 2, df)
    return Effect(mean, float(t * se), se if s > 1 else 0.0, image_se, s, tuple(seed_means))


def seed_effect(per_seed: Sequence[float]) -> Effect:
    """A per-run number (an NLL, a count of active units) over S >= 2 seeds: its mean with a t-interval
    (S - 1 degrees of freedom) from their spread."""
    values = [float(v) for v in per_seed]
    if len(values) < 2:
        raise ValueError("a spread over seeds needs at least 2 seeds")
    s = len(values)
    mean = sum(values) / s
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (s - 1) / s)
    return Effect(mean, float(stats.t.ppf(0.5 + CONFIDENCE / 2, s - 1) * se), se, 0.0, s, tuple(values))


def known_effect(mean: float, se: float, seeds: int = 1) -> Effect:
    """An effect known only by its mean and one standard error (normal interval): a single run's number
    against a published target, or a gap of two unpaired means."""
    return Effect(mean, float(stats.norm.ppf(0.5 + CONFIDENCE / 2) * se), 0.0, se, seeds, (mean,))


# ----------------------------------------------------------------------------- the verdict rule

REPRODUCED, REVERSED, NO_DIFFERENCE = "reproduced", "reversed", "no significant difference"


def verdict(effect: Effect, claimed_sign: int = -1, min_seeds: int = 1) -> str:
    """The one rule every claim is judged by: the claim says the effect has `claimed_sign` (-1: A's
    NLL is lower). Reproduced when the whole interval lies on that side of zero, reversed when it
    lies wholly on the other, else no significant difference. Fewer than `min_seeds` training seeds
    give no verdict at all."""
    if claimed_sign not in (-1, 1):
        raise ValueError(f"claimed_sign must be -1 or +1, got {claimed_sign}")
    if effect.seeds < min_seeds:
        return f"not measured yet ({effect.seeds} of {min_seeds} seeds)"
    low, high = sorted((claimed_sign * effect.low, claimed_sign * effect.high))
    if low > 0:
        return REPRODUCED
    if high < 0:
        return REVERSED
    return NO_DIFFERENCE


def tally(verdicts: dict[int, str], better: str, worse: str) -> str:
    """'ladder better at 2 of 4 depths, VAE better at 1, no difference at 1' from {depth: verdict}."""
    n = len(verdicts)
    if not any(v in (REPRODUCED, REVERSED, NO_DIFFERENCE) for v in verdicts.values()):
        return f"not measured yet (no depth has {MIN_SEEDS} seeds of both)"
    counts = {v: sum(1 for x in verdicts.values() if x == v) for v in (REPRODUCED, REVERSED, NO_DIFFERENCE)}
    pending = n - sum(counts.values())
    text = (f"{better} better at {counts[REPRODUCED]} of {n} depths, {worse} better at {counts[REVERSED]}, "
            f"no difference at {counts[NO_DIFFERENCE]}")
    return text + (f", not measured yet at {pending}" if pending else "")
