"""`make paper-best`: the `paper-best` recipe in three training stages and its scores, from one command.

    python -m lvae.experiments.paper_best [--arch wide|narrow] [--threads N] [--score-threads N] [--iw-samples 5000]
                              [--runs runs] [--results results] [--data-root DIR] [--test-limit N] [--limit N] [--stage-epochs M F I]

Stages, each a `python -m lvae train` of its own in RUNS/NAME/STAGE, each starting from the last:

    main      --config paper-best (or paper-best-narrow): the paper code's setup, cosine 2e-3 -> 2e-4, 300 epochs
    finetune  the paper's fine-tuning: a lower learning rate (2e-4 -> 0, cosine), 50 epochs
    iw        then with the importance-weighted bound, K = 10 (Burda et al., 2016), 1e-4 -> 0, 20 epochs

The budget is 6 CPU-core-hours of training, counted as the training processes' own CPU time
(user + system, all threads, the test ELBO of every 10th epoch included), so that other jobs on the
machine do not change it; the wall time is recorded beside it. Each stage's last weights are
scored per image with K = 1000 (paired, stage against stage: what each ingredient bought),
the last also with K = --iw-samples (the headline), each score cached in its stage's folder, and
written as results/NAME.json and results/NAME.pt (weights under 10 MiB: lvae.weights).

Run again, it continues: a finished stage is skipped and an unfinished one resumed exactly
(`train --resume`, the same settings); the JSON then says `uninterrupted: false` and lists
every command.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lvae import checkpoint as ckpt
from lvae import flags
from lvae.experiments.paper import CHILDREN, command, final_evaluation, finished_epochs, forwarding_signals, likelihood_score, run_logged
from lvae.results import save_result
from lvae.runlock import EXIT_LOCKED, RunLocked, runner_lock

ARCHS = {"wide": "paper-best", "narrow": "paper-best-narrow"}  # --arch: the result's name is its config's
BUDGET_CORE_HOURS = 6.0
PAPER_NLL = {"LVAE, L = 5": 82.12, "+ fine-tuning": 81.84, "+ fine-tuning, IW K = 10": 81.74}  # Sønderby et al. (2016), table 1 (MNIST; their table 2 is OMNIGLOT and NORB)
TARGET_NLL = PAPER_NLL["+ fine-tuning, IW K = 10"]
STAGE_SCORE_K = 1000
TEST_EVERY = 10  # the per-epoch test ELBO every 10th epoch (and the last): ~40 % of an epoch's CPU otherwise, inside the budget


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int
    flags: tuple[str, ...]  # train flags beyond --config/--finetune, --out and --epochs

    def argv(self, config: str, previous: Path | None, out: Path, data: tuple[str, ...], smoke: tuple[str, ...]) -> list[str]:
        """A fresh stage's command; `smoke` (--limit, --batch-size) goes to the first only: the others keep its data."""
        start = ["--finetune", str(previous)] if previous else ["--config", config, *smoke]
        return ["train", *start, "--out", str(out), "--epochs", str(self.epochs), *self.flags, "--test-every", str(TEST_EVERY),
                "--no-progress", *data]


STAGES = (
    Stage("main", 300, ()),
    Stage("finetune", 50, ("--lr", "2e-4", "--lr-schedule", "cosine")),
    Stage("iw", 20, ("--lr", "1e-4", "--lr-schedule", "cosine", "--objective", "iw", "--iw-train", "10")),
)


def children_cpu_seconds() -> float:
    """User + system CPU of this process's finished children (the training subprocesses), all threads."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def code_version() -> str | None:
    """The commit this code runs from ("+ changes" when the tracked tree differs), so that stages trained by
    different runner invocations (a bug fixed between them, say) say so; None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, check=True).stdout.strip()
    try:
        return git("rev-parse", "--short", "HEAD") + (" + changes" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def epoch_totals(run_dir: Path, key: str) -> float:
    """The sum of one column of a run's epochs.jsonl (`cpu_seconds`, `seconds`): what a stage's epochs used,
    across attempts cut off with their parent too (those leave no record in stage.json)."""
    from lvae.training import read_jsonl

    return sum(r.get(key, 0.0) for r in read_jsonl(run_dir / "epochs.jsonl"))


def train_stage(stage: Stage, config: str, previous: Path | None, run_dir: Path, threads: int, data: tuple[str, ...],
                smoke: tuple[str, ...], say) -> dict[str, Any]:
    """Train (or resume, or skip) one stage; returns its record: commands, CPU seconds, wall seconds. Every
    attempt is kept, a failed one too: its CPU counts against the budget, and it makes the result not uninterrupted."""
    record_file = run_dir / "stage.json"
    record = json.loads(record_file.read_text()) if record_file.exists() else {"stage": stage.name, "attempts": []}
    if finished_epochs(run_dir) < stage.epochs:
        fresh = not (run_dir / ckpt.LATEST).exists()
        argv = stage.argv(config, previous, run_dir, data, smoke) + ["--overwrite"] if fresh else \
            ["train", "--resume", str(run_dir), "--no-progress", *data]
        say(f"{stage.name}: {'training' if fresh else 'resuming'} ({command([a for a in argv if a != '--overwrite'])}, {threads} thread(s))")
        cpu0, wall0 = children_cpu_seconds(), time.perf_counter()
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            run_logged(argv, run_dir.parent / f"{stage.name}-log.txt", threads)
        finally:  # a failed attempt's CPU counts against the budget too
            record["attempts"].append({"command": command([a for a in argv if a != "--overwrite"]), "code": code_version(),
                                       "cpu_seconds": children_cpu_seconds() - cpu0, "wall_seconds": time.perf_counter() - wall0})
            ckpt.write_atomic(record_file, lambda f: f.write(json.dumps(record, indent=1).encode()))
    attempts = record["attempts"]
    # An attempt cut off with its parent (a session's end) is not in `attempts`; its epochs are in epochs.jsonl.
    # The epochs' own sums leave out start-up and checkpoint writes (and the wall time of test passes), so they
    # are a floor, and the attempts' sums miss only such cut-off attempts: the larger of the two is the count.
    cpu = max(sum(a["cpu_seconds"] for a in attempts), epoch_totals(run_dir, "cpu_seconds"))
    wall = max(sum(a["wall_seconds"] for a in attempts), epoch_totals(run_dir, "seconds"))
    return {"stage": stage.name, "epochs": stage.epochs, "commands": [a["command"] for a in attempts],
            "code": [a.get("code") for a in attempts],  # None: an attempt recorded before runs kept it
            "resumed": len(attempts) != 1 or any(" --resume " in a["command"] for a in attempts),
            "cpu_seconds": cpu, "wall_seconds": wall}


def paired_gain(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """NLL(after) - NLL(before), image by image on the same test images: mean and its standard error (one seed)."""
    diff = torch.tensor(before["per_image_log_px"], dtype=torch.float64) - torch.tensor(after["per_image_log_px"], dtype=torch.float64)
    return {"nll_change": diff.mean().item(), "stderr": diff.std().item() / math.sqrt(len(diff))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lvae.experiments.paper_best", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="wide", help="wide: config paper-best; narrow: the paper's own widths")
    ap.add_argument("--threads", type=flags.integer(1, 1024), default=1,
                    help="torch threads per stage (default 1: the most training per CPU-core-hour)")
    ap.add_argument("--score-threads", type=flags.integer(1, 1024), help="torch threads per score (default: --threads); a score is outside the "
                    "training budget, and K = 5000 on one thread takes about an hour for the wide model")
    ap.add_argument("--iw-samples", type=flags.integer(1, 1_000_000), default=5000, help="K of the headline score")
    ap.add_argument("--runs", type=flags.folder, default=Path("runs"))
    ap.add_argument("--results", type=flags.folder, default=Path("results"))
    smoke = ap.add_argument_group("smoke runs (a quick check of the pipeline; send them to another --results folder)")
    smoke.add_argument("--data-root", type=flags.existing_folder)
    smoke.add_argument("--test-limit", type=flags.integer(1, 10_000_000), help="score the first N test images only")
    smoke.add_argument("--limit", type=flags.integer(1, 10_000_000), help="train on the first N images")
    smoke.add_argument("--batch-size", type=flags.integer(1, 60000))
    smoke.add_argument("--stage-epochs", type=flags.integer(1, 100_000), nargs=3, metavar=("MAIN", "FINETUNE", "IW"),
                       help="each stage's epochs")
    a = ap.parse_args(argv)  # every flag is checked here, before the first stage trains
    try:
        with forwarding_signals(), runner_lock(a.runs / ARCHS[a.arch]):  # one runner per recipe, from its first stage to its result
            code = run(a)
            return 128 + CHILDREN.stopping if CHILDREN.stopping else code
    except RunLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_LOCKED


def run(a: argparse.Namespace) -> int:
    """Train the stages, score them, and write the result (main, once the flags are checked and the recipe is held)."""
    config = ARCHS[a.arch]
    score_threads = a.score_threads or a.threads
    stages = [Stage(s.name, e, s.flags) for s, e in zip(STAGES, a.stage_epochs)] if a.stage_epochs else list(STAGES)
    data = ("--data-root", str(a.data_root)) if a.data_root else ()
    smoke = tuple(x for flag, v in (("--limit", a.limit), ("--batch-size", a.batch_size)) if v for x in (flag, str(v)))
    root = a.runs / config
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{(time.perf_counter() - t0) / 60:6.1f} min] {config} {msg}", flush=True)

    records, scores, previous = [], [], None
    limit = ["--limit", str(a.test_limit)] if a.test_limit else []
    for stage in stages:
        run_dir = root / stage.name
        records.append(train_stage(stage, config, previous, run_dir, a.threads, data, smoke, say))
        # the main stage's warm-up, cosine and epochs are in its config; later stages inherit its model and data
        scores.append(likelihood_score(run_dir, STAGE_SCORE_K, None, run_dir.parent / "score-log.txt", score_threads, say, stage.name,
                                       a.data_root, extra_argv=limit))
        previous = run_dir

    cpu_hours = sum(r["cpu_seconds"] for r in records) / 3600
    say(f"trained with {cpu_hours:.2f} CPU-core-hours")
    final = final_evaluation(previous, a.iw_samples, previous.parent / "score-log.txt", score_threads, say, "the last stage", a.data_root,
                             extra_argv=limit)  # cached: a run cut off after it (or in it, at a session's end) does not redo it
    result = save_result(previous, config, a.iw_samples, " && ".join(c for r in records for c in r["commands"]),
                         out_dir=a.results, data_root=a.data_root, evaluation=final)
    for record, score, before in zip(records, scores, [None, *scores[:-1]]):
        record.update(nll_k1000=score["nll"], nll_k1000_stderr=score["nll_stderr"],
                      gain_over_previous_stage=paired_gain(before, score) if before else None)
    result.update(
        recipe=config, stages=records, uninterrupted=not any(r["resumed"] for r in records),
        cpu_core_hours=cpu_hours, budget_core_hours=BUDGET_CORE_HOURS, within_budget=cpu_hours <= BUDGET_CORE_HOURS,
        train_wall_minutes=sum(r["wall_seconds"] for r in records) / 60, train_threads=a.threads, score_threads=score_threads,
        paper_nll=PAPER_NLL, target_nll=TARGET_NLL, stage_score_iw_samples=STAGE_SCORE_K,
        # the last stage's K = 1000 score, image by image, of the same weights: what tests/test_committed_weights.py
        # replays (K = 5000 on 2000 images would add about ten minutes to CI)
        check_score={k: scores[-1][k] for k in ("iw_samples", "iw_chunk", "per_image_log_px") if k in scores[-1]},
    )
    ckpt.write_atomic(a.results / f"{config}.json", lambda f: f.write((json.dumps(result, indent=1) + "\n").encode()))
    say(f"NLL {result['nll']:.2f} ± {result['nll_stderr']:.2f} (K = {a.iw_samples}; the paper's best {TARGET_NLL}), "
        f"{cpu_hours:.2f} of {BUDGET_CORE_HOURS:.0f} CPU-core-hours, {result['train_wall_minutes']:.0f} min of training "
        f"-> {a.results / config}.json, .pt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
