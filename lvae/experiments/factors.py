"""`python -m lvae.experiments.factors` (`make factors`): why the ladder beats the VAE, detail by detail.

The 5-layer ladder beats the VAE (both BN + WU) on the paper code's setup, and did not on this repo's
first setup; eight details changed between the two (docs/fidelity.md rows 1-8). This study reverts each
detail alone, then all eight together, and replaces the ladder's precision-weighted merge, on the depth
sweep's setting (5 layers, 50 epochs, warm-up 20, K = 100 on the full test set, seeds 0, 1, 2):

    details 1, 2 (the ladder's own: what up_k reads, the inference top-down path): the ladder only,
                 paired with the baseline VAE
    details 3-8 (batch norm on the heads, the variance floor, clipping, Adam's eps, batch-norm
                 statistics, the LeakyReLU slope): both models, so the effect on the gap is a
                 difference in differences, paired by seed and image
    all eight:   both models (the first setup): the joint effect beside the sum of the single ones
    the merge:   the ladder only: (a) a learned combination of bottom-up and top-down features
                 (concatenate, then the Gaussian head), (b) q from the bottom-up pass alone

The baseline is the committed sweep (results/paper/sweep-L5-{lvae,vae}-bn-wu-s*.json), reused, not
retrained. Every arm is one `python -m lvae train` command (the arm's settings as `--set FIELD=VALUE`)
then `evaluate`, exactly as `make paper` runs the sweep; finished runs (their JSON exists) are skipped,
unfinished ones resumed; two single-thread processes at a time by default.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from lvae import flags
from lvae.config import FIRST_SETUP_MODEL, FIRST_SETUP_TRAIN, LADDER_ONLY_FIELDS
from lvae.experiments import paper

RESULTS = Path("results/factors")
RUNS = Path("runs/factors")
SEEDS = paper.SEEDS
LADDER, VAE = paper.PAIR  # "lvae-bn-wu", "vae-bn-wu"


def _first_setup(*fields: str) -> tuple[str, ...]:
    """`field=value` settings that put `fields` back to this repo's first setup (config.FIRST_SETUP_*)."""
    first = {f"model.{k}": v for k, v in FIRST_SETUP_MODEL.items()} | {f"train.{k}": v for k, v in FIRST_SETUP_TRAIN.items()}
    return tuple(f"{f}={'none' if first[f] is None else str(first[f]).lower() if isinstance(first[f], bool) else first[f]}"
                 for f in fields)


@dataclass(frozen=True)
class Factor:
    """One arm of the study: the settings that change, and which models it trains."""

    key: str
    label: str  # what the arm does, for tables and the figure
    settings: tuple[str, ...]
    detail: int | None = None  # its row in docs/fidelity.md (None: not one of the eight)

    @property
    def ladder_only(self) -> bool:
        """An arm whose every setting is the ladder's own trains the ladder only (the VAE would be the baseline's)."""
        return all(s.split("=")[0] in LADDER_ONLY_FIELDS for s in self.settings)

    def settings_for(self, variant: str) -> tuple[str, ...]:
        """The arm's settings that the variant's model has (the VAE has no ladder fields)."""
        keep_ladder = paper.VARIANTS[variant].model == "lvae"
        return tuple(s for s in self.settings if keep_ladder or s.split("=")[0] not in LADDER_ONLY_FIELDS)


DETAIL_FIELDS = {
    1: ("ladder-up", "up_k reads the features, not the mean below", ("model.ladder_up",)),
    2: ("ladder-inference", "q_hat merged with the prior itself (shared)", ("model.ladder_inference",)),
    3: ("head-bn", "no batch norm on the Gaussian heads", ("model.head_batch_norm",)),
    4: ("var-floor", "variance floor 1e-4, not 1e-5", ("model.var_floor",)),
    5: ("clipping", "no gradient clipping", ("train.grad_clip", "train.grad_clip_value")),
    6: ("adam-eps", "Adam eps 1e-8, not 1e-4", ("train.adam_eps",)),
    7: ("bn-stats", "running batch-norm averages at test", ("train.bn_recompute",)),
    8: ("leaky-slope", "LeakyReLU slope 0.1, not 0.01", ("model.leaky_slope",)),
}
DETAILS = tuple(Factor(key, label, _first_setup(*fields), n) for n, (key, label, fields) in DETAIL_FIELDS.items())
ALL_EIGHT = Factor("all-eight", "all eight reverted (the first setup)", tuple(s for f in DETAILS for s in f.settings))
MERGE_CONCAT = Factor("merge-concat", "learned merge: [d_k, t_k] -> Gaussian head", ("model.ladder_merge=concat",))
MERGE_NONE = Factor("merge-none", "no top-down information in q", ("model.ladder_merge=bottom-up",))
# The order they run: the cheap ladder-only arms first (a verdict each after 3 runs), then the joint arm, then 3-8.
FACTORS = (DETAILS[0], DETAILS[1], MERGE_CONCAT, MERGE_NONE, ALL_EIGHT, *DETAILS[2:])


def experiment_name(factor: Factor, variant: str, seed: int) -> str:
    return f"factor-{factor.key}-{variant}-s{seed}"


def experiments(budget: paper.Budget = paper.SWEEP, seeds: tuple[int, ...] = SEEDS) -> list[paper.Experiment]:
    """Every run of the study, in the order they run: arm by arm, seed by seed, the ladder first."""
    out = []
    for factor in FACTORS:
        variants = (LADDER,) if factor.ladder_only else (LADDER, VAE)
        out += [paper.Experiment(experiment_name(factor, v, s), "factor", v, 5, budget, s, factor.settings_for(v))
                for s in seeds for v in variants]
    return out


def baseline_name(variant: str, seed: int) -> str:
    """The committed sweep run an arm is paired with."""
    return f"sweep-L5-{variant}-s{seed}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lvae.experiments.factors", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=flags.integer(1, 256), default=max(1, min(2, os.cpu_count() or 1)), help="runs in parallel (default 2)")
    p.add_argument("--threads", type=flags.integer(1, 1024), default=1, help="torch threads per run (default 1)")
    p.add_argument("--only", nargs="*", help="experiment names to run (default: all); --list shows them")
    p.add_argument("--factors", nargs="+", choices=[f.key for f in FACTORS], help="run these arms only")
    p.add_argument("--list", action="store_true", help="list the runs and whether each is done")
    p.add_argument("--runs", type=flags.folder, default=RUNS)
    p.add_argument("--results", type=flags.folder, default=RESULTS)
    p.add_argument("--no-estimate", action="store_true", help="skip the timing that the estimate needs")
    smoke = p.add_argument_group("smoke runs (a quick check of the pipeline; send them to another --results folder)")
    smoke.add_argument("--epochs", type=flags.integer(1, 100_000))
    smoke.add_argument("--iw-samples", type=flags.integer(1, 1_000_000))
    smoke.add_argument("--data-root", type=flags.existing_folder)
    smoke.add_argument("--limit", type=flags.integer(1, 10_000_000))
    smoke.add_argument("--batch-size", type=flags.integer(1, 60000))
    a = p.parse_args(argv)  # every flag is checked here (lvae.flags), before any run starts
    budget = paper.SWEEP
    if a.epochs:
        budget = replace(budget, epochs=a.epochs, warmup_epochs=min(budget.warmup_epochs, a.epochs))
    if a.iw_samples:
        budget = replace(budget, iw_samples=a.iw_samples)
    todo = [e for e in experiments(budget) if (not a.only or e.name in a.only)
            and (not a.factors or any(e.name.startswith(f"factor-{k}-") for k in a.factors))]
    if a.only and len(todo) != len(a.only):
        print(f"error: unknown run(s) {sorted(set(a.only) - {e.name for e in todo})}; see --list", file=sys.stderr)
        return 2
    pending = [e for e in todo if not (a.results / f"{e.name}.json").exists()]
    if a.list:
        for e in todo:
            print(f"{e.name:40s} {' '.join(e.settings) or '-':60s} {paper.run_state(e, pending, a.runs)}")
        return 0
    print(f"{len(todo) - len(pending)} of {len(todo)} runs done; {len(pending)} to run, {a.jobs} at a time, {a.threads} thread(s) each")
    if pending and not a.no_estimate:
        paper.print_estimate(pending, a.runs, a.jobs)
    extra = tuple(x for flag, v in (("--limit", a.limit), ("--batch-size", a.batch_size)) if v for x in (flag, str(v)))
    return paper.interruptible(lambda: paper.run_pending(pending, a.runs, a.results, a.jobs, a.threads, a.data_root, extra))


if __name__ == "__main__":
    sys.exit(main())
