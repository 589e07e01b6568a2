"""What each arm of the factor study did to the ladder, to the VAE and to the gap between them.

For an arm A, training seed s and test image i (K = 100 log p(x) estimates, saved per image):

    ladder change  l_si = NLL(A's ladder, s, i) - NLL(baseline ladder, s, i)
    VAE change     v_si = NLL(A's VAE, s, i)    - NLL(baseline VAE, s, i)     (0 for a ladder-only arm: its VAE is the baseline's)
    gap change     g_si = l_si - v_si                                          (a difference in differences)

The baseline is the committed sweep (results/paper/sweep-L5-{lvae,vae}-bn-wu-s*.json), so seed s of an arm is
paired with seed s of the baseline; each change is a paired effect over the seeds both have (effects.paired_effect:
its interval includes the spread across seeds). The gap is NLL(ladder) - NLL(VAE), negative where the ladder wins,
so a positive gap change means that reverting the detail takes some of the ladder's advantage away: the detail
carries part of it. The joint arm (all eight reverted) is set beside the sum of the eight single arms, image by
image and seed by seed: their difference is the interaction, the part that single reversions do not add up to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvae.experiments import paper
from lvae.experiments.effects import MIN_SEEDS, NO_DIFFERENCE, REPRODUCED, REVERSED, Effect, paired_effect, verdict
from lvae.experiments.factors import ALL_EIGHT, DETAILS, FACTORS, LADDER, RESULTS, SEEDS, VAE, Factor, baseline_name, experiment_name

Run = dict[str, Any]
CARRIES, AGAINST = "carries part of the gap", "works against the gap"
WORDS = {REPRODUCED: CARRIES, REVERSED: AGAINST, NO_DIFFERENCE: NO_DIFFERENCE}


def nll_change(arm: Run, base: Run) -> list[float]:
    """NLL(arm) - NLL(base), image by image, from each run's saved per-image log p(x)."""
    a, b = arm.get("per_image_log_px"), base.get("per_image_log_px")
    if not a or not b or len(a) != len(b):
        raise KeyError(f"{arm.get('name')} and {base.get('name')} have no per-image log p(x) over the same images")
    return [y - x for x, y in zip(a, b)]


@dataclass(frozen=True)
class ArmEffect:
    """One arm's paired changes; None where the arm has no seed measured yet (or, for `vae`, trains no VAE)."""

    factor: Factor
    ladder: Effect | None
    vae: Effect | None
    gap: Effect | None
    seeds: tuple[int, ...]

    @property
    def judged(self) -> str:
        """The repo's one rule on the gap change, claimed positive (the detail carries the ladder's advantage)."""
        if self.gap is None:
            return f"not measured yet (0 of {MIN_SEEDS} seeds)"
        v = verdict(self.gap, claimed_sign=+1, min_seeds=MIN_SEEDS)
        return WORDS.get(v, v)


def per_seed_changes(factor: Factor, factor_runs: dict[str, Run], baseline: dict[str, Run]) -> dict[int, tuple[list[float], list[float] | None]]:
    """{seed: (ladder change, VAE change or None)} over the seeds where the arm and the baseline both have every run."""
    out = {}
    for s in SEEDS:
        arm_l, base_l, base_v = factor_runs.get(experiment_name(factor, LADDER, s)), baseline.get(baseline_name(LADDER, s)), baseline.get(baseline_name(VAE, s))
        if arm_l is None or base_l is None or base_v is None:
            continue
        if factor.ladder_only:
            out[s] = (nll_change(arm_l, base_l), None)
            continue
        arm_v = factor_runs.get(experiment_name(factor, VAE, s))
        if arm_v is not None:
            out[s] = (nll_change(arm_l, base_l), nll_change(arm_v, base_v))
    return out


def gap_change(ladder: list[float], vae: list[float] | None) -> list[float]:
    return list(ladder) if vae is None else [l - v for l, v in zip(ladder, vae)]


def arm_effect(factor: Factor, factor_runs: dict[str, Run], baseline: dict[str, Run]) -> ArmEffect:
    changes = per_seed_changes(factor, factor_runs, baseline)
    if not changes:
        return ArmEffect(factor, None, None, None, ())
    seeds = tuple(sorted(changes))
    ladder = paired_effect([changes[s][0] for s in seeds])
    vae = None if factor.ladder_only else paired_effect([changes[s][1] for s in seeds])
    gap = paired_effect([gap_change(*changes[s]) for s in seeds])
    return ArmEffect(factor, ladder, vae, gap, seeds)


def interaction(factor_runs: dict[str, Run], baseline: dict[str, Run]) -> tuple[Effect, Effect, Effect] | None:
    """(joint gap change, sum of the eight single gap changes, joint - sum), paired over the seeds where all nine arms are
    measured; None before then."""
    per_arm = {f.key: per_seed_changes(f, factor_runs, baseline) for f in (*DETAILS, ALL_EIGHT)}
    seeds = sorted(set.intersection(*(set(c) for c in per_arm.values())))
    if not seeds:
        return None
    joint = [gap_change(*per_arm[ALL_EIGHT.key][s]) for s in seeds]
    summed = [[sum(col) for col in zip(*(gap_change(*per_arm[f.key][s]) for f in DETAILS))] for s in seeds]
    return (paired_effect(joint), paired_effect(summed),
            paired_effect([[j - t for j, t in zip(js, ts)] for js, ts in zip(joint, summed)]))


def load(results: Path = RESULTS, baseline: Path = paper.RESULTS) -> tuple[dict[str, Run], dict[str, Run]]:
    """The study's finished runs and the sweep's 5-layer BN + WU baseline, each by name."""
    factor_runs = paper.load_results(results) if Path(results).is_dir() else {}
    names = {baseline_name(v, s) for v in (LADDER, VAE) for s in SEEDS}
    return factor_runs, {n: r for n, r in paper.load_results(baseline).items() if n in names}


def effects(results: Path = RESULTS, baseline: Path = paper.RESULTS) -> list[ArmEffect]:
    factor_runs, base = load(results, baseline)
    return [arm_effect(f, factor_runs, base) for f in FACTORS]


# ----------------------------------------------------------------------------- words


def _cell(e: Effect | None) -> str:
    return "…" if e is None else f"{e.mean:+.2f} [{e.low:+.2f}, {e.high:+.2f}]"


def table(arms: list[ArmEffect]) -> list[str]:
    """One row per arm: the change in the ladder's NLL, the VAE's and the gap, and the verdict on the gap."""
    lines = ["| arm | fidelity row | seeds | ladder NLL change | VAE NLL change | gap change (ladder − VAE) | the gap's verdict |",
             "|---|---|---|---|---|---|---|"]
    for a in arms:
        vae = "(baseline's VAE)" if a.factor.ladder_only else _cell(a.vae)
        row = a.factor.detail if a.factor.detail else ("1–8" if a.factor is ALL_EIGHT else "—")
        lines.append(f"| {a.factor.label} (`{a.factor.key}`) | {row} | {len(a.seeds)} | {_cell(a.ladder)} | {vae} | {_cell(a.gap)} | {a.judged} |")
    return lines


def claim_text(arms: list[ArmEffect], joint: tuple[Effect, Effect, Effect] | None) -> tuple[str, str]:
    """(what was measured, the verdict) for the claims table's row "the ladder's advantage needs ..."."""
    details = [a for a in arms if a.factor.detail]
    measured = "; ".join(f"{a.factor.detail} {a.factor.key}: {_cell(a.gap)} ({len(a.seeds)} seed{'s' * (len(a.seeds) != 1)})" for a in details)
    merges = [a for a in arms if a.factor.detail is None and a.factor is not ALL_EIGHT]
    measured += "; merge arms: " + "; ".join(f"{a.factor.key}: {_cell(a.gap)}" for a in merges)
    if joint:
        measured += (f"; all eight reverted: {_cell(joint[0])} against the sum of the single ones {_cell(joint[1])} "
                     f"(interaction {_cell(joint[2])})")
    groups: dict[str, list[str]] = {}
    for a in details:
        groups.setdefault(a.judged, []).append(str(a.factor.detail))
    order = [CARRIES, AGAINST, NO_DIFFERENCE]
    verdict_text = "; ".join(f"{k}: detail{'s' * (len(groups[k]) != 1)} {', '.join(groups[k])}"
                             for k in order + sorted(set(groups) - set(order)) if k in groups)
    return f"gap change when each detail is reverted, paired by seed and image, 95 % seed-aware intervals: {measured}", verdict_text
