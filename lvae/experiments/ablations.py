"""Ablations on the `paper` LVAE at an equal budget: each change against the same baseline, two seeds.

    python -m lvae.experiments.ablations [--epochs 12] [--seeds 2] [--iw-samples 100] [--limit 2000] [--only NAME ...]
    python -m lvae.experiments.ablations --equal-cpu-seconds S [--only baseline bf16 ema] [--seeds 3]

Every arm trains for `--epochs` epochs (at least twice the longest warm-up of any arm, so
each warm-up has finished and had as long again to settle: the script refuses a shorter
budget) into runs/paper-ablations/<name>-s<seed>, and is scored by the importance-weighted
NLL on the first `--limit` test images (fixed binarization). A change is compared with the
baseline of the *same seed* image by image (`keep_or_drop`: the seed-aware paired effect of
lvae/experiments/effects.py and the repo's one verdict rule): "kept" when the 95 % interval of
its NLL change lies below zero, "dropped" when above, else "no clear effect". Rows go to
results/paper-ablations.json as they finish.

Issue 17's arms (`bf16`, `ema`) trade speed for quality, so they are compared at an equal CPU
time instead (`--equal-cpu-seconds S`; by default baseline, bf16 and ema, three seeds): each arm
trains one epoch at a time until this process's CPU time (user + system, `time.process_time`)
spent on its training (test passes left out) reaches S, its lr and beta schedules laid out over `--epochs` whatever epoch it
stops at, and records the epochs it reached and the CPU seconds it used. Those rows go to
results/paper-ablations-cpu.json and runs/paper-ablations-cpu/.

Run again with more `--seeds`, it trains only the new ones: each finished arm leaves `arm.json` in
its run folder (its budget, the epochs and CPU it reached), and an arm whose record matches this
run's budget is scored again from its last checkpoint instead of being trained again.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from lvae import checkpoint as ckpt
from lvae import flags
from lvae.config import LayerSpec, paper_config, with_overrides
from lvae.experiments.effects import REPRODUCED, REVERSED, Effect, paired_effect, verdict
from lvae.data import load_split
from lvae.evaluation import active_units, hardware, iw_log_likelihood
from lvae.training import Trainer, evaluation_inputs, split_elbo

BASE_WARMUP = 5  # epochs: the baseline's warm-up, short enough for a budget of twice the longest arm's
WIDE = [LayerSpec("dense", (w, w), latent=z) for w, z in zip((1024, 512, 256, 128, 64), (64, 32, 16, 8, 4))]
# name -> (what it changes, overrides as dotted config paths)
ROWS: dict[str, tuple[str, dict]] = {
    "baseline": (f"the paper config (constant lr 2e-3), warm-up over {BASE_WARMUP} epochs", {}),
    "cosine": ("cosine lr schedule 2e-3 -> 0", {"train.lr_schedule": "cosine"}),
    "warmup-2": (f"warm-up over 2 epochs instead of {BASE_WARMUP}", {"objective.beta.steps": 2}),
    "free-bits": ("free bits: 0.5 nats per layer", {"objective.free_bits": 0.5}),
    "wide": ("layers twice as wide (1024 ... 64)", {"model.layers": WIDE}),
    "bf16": ("bf16 autocast of the forward pass (the loss in float32)", {"train.amp": "bf16"}),
    "ema": ("scored with a moving average of the weights, decay 0.999 per step", {"train.ema_decay": 0.999}),
}
EQUAL_EPOCH_ROWS = ("baseline", "cosine", "warmup-2", "free-bits", "wide")  # what a run without --only trains
EQUAL_CPU_ROWS = ("baseline", "bf16", "ema")  # issue 17: the same with --equal-cpu-seconds
ARM_RECORD = "arm.json"  # in each arm's run folder: what it was trained with and reached
cpu_clock = time.process_time  # this process's CPU seconds (a test replaces it)


def make_config(overrides: dict, epochs: int, seed: int):
    cfg = paper_config()
    cfg.train.epochs, cfg.train.seed = epochs, seed
    cfg.objective.beta.steps = BASE_WARMUP
    return with_overrides(cfg, overrides)


def check_budget(epochs: int) -> None:
    longest = max(make_config(o, epochs, 0).objective.beta.steps or epochs for _, o in ROWS.values())
    if epochs < 2 * longest:
        raise SystemExit(f"error: --epochs {epochs} is shorter than twice the longest warm-up ({longest} epochs): "
                         f"the comparison would measure an unfinished warm-up; use --epochs {2 * longest} or more")


def train_for_cpu_seconds(trainer: Trainer, seconds: float) -> dict:
    """Train one epoch at a time until the CPU time spent training since the call reaches `seconds` (the
    last epoch is finished, so an arm may pass the budget by up to one epoch); returns what it reached.
    The per-epoch test passes are left out of the count (`Trainer.test_cpu_seconds`): they train nothing,
    and an arm that evaluates differently (a moving average's batch-norm recompute) must not pay for it.
    The trainer's schedules must already be laid out over a fixed horizon (`train.schedule_epochs`)."""
    assert trainer.cfg.train.schedule_epochs is not None, "fix the schedules' horizon first"
    start, tested = cpu_clock(), trainer.test_cpu_seconds
    while True:
        trainer.fit()
        used = cpu_clock() - start - (trainer.test_cpu_seconds - tested)
        if used >= seconds:
            return {"epochs": trainer.state.epoch, "cpu_seconds": used}
        trainer.cfg.train.epochs = trainer.state.epoch + 1


def arm_budget(name: str, a: argparse.Namespace) -> dict:
    """What an arm's training depends on beyond its seed: a finished arm is reused only under the same."""
    return {"overrides": {k: str(v) for k, v in ROWS[name][1].items()}, "epochs": a.epochs, "equal_cpu_seconds": a.equal_cpu_seconds}


def train_arm(name: str, seed: int, a: argparse.Namespace, train, test, run_dir: Path) -> dict:
    """Train one arm with one seed, for `--epochs` or until `--equal-cpu-seconds`; record it in RUN/arm.json."""
    overrides = ROWS[name][1]
    t0 = time.perf_counter()
    if a.equal_cpu_seconds is None:
        trainer = Trainer(make_config(overrides, a.epochs, seed), run_dir, train, test, progress=False)
        trainer.fit()
        reached = {}
    else:  # one epoch at a time, the schedules laid out over --epochs
        cfg = make_config({**overrides, "train.schedule_epochs": a.epochs}, a.epochs, seed)
        cfg.train.epochs = 1
        trainer = Trainer(cfg, run_dir, train, test, progress=False)
        reached = train_for_cpu_seconds(trainer, a.equal_cpu_seconds)
    record = {"budget": arm_budget(name, a), "seed": seed, "train_seconds": time.perf_counter() - t0, **reached}
    ckpt.write_atomic(run_dir / ARM_RECORD, lambda f: f.write(json.dumps(record, indent=1).encode()))
    return record


def finished_record(run_dir: Path, budget: dict, seed: int) -> dict | None:
    """The record of an arm trained earlier under `budget` with `seed`, if its folder holds one and its weights."""
    path = run_dir / ARM_RECORD
    if not (path.is_file() and (run_dir / ckpt.LATEST).is_file()):
        return None
    record = json.loads(path.read_text())
    return record if (record.get("budget"), record.get("seed")) == (budget, seed) else None


def score_arm(run_dir: Path, record: dict, x: torch.Tensor, iw_samples: int) -> tuple[dict, torch.Tensor]:
    """A trained arm's row for one seed (what its record says it reached, and its scores) and its per-image log p(x)."""
    _, model = ckpt.load_run(run_dir)  # the weights it is scored with (the moving average's with ema_decay)
    reached = {k: record[k] for k in ("epochs", "cpu_seconds") if k in record}
    torch.manual_seed(0)
    iw = iw_log_likelihood(model, x, iw_samples, "bernoulli")
    elbo = split_elbo(model, x, "bernoulli")
    active, units, _ = active_units(model, x)
    return ({"seed": record["seed"], "train_seconds": record["train_seconds"], **reached, "elbo": elbo["elbo"], "kl_per_layer": elbo["kl"],
             "nll": iw.nll, "nll_stderr": iw.stderr, "active_units": active, "latent_units": units}, iw.per_image)


def run_arm(name: str, seed: int, a: argparse.Namespace, train, test, x) -> tuple[dict, torch.Tensor]:
    """Train one arm with one seed (or reuse its finished run) and score its last weights."""
    run_dir = Path("runs/paper-ablations" if a.equal_cpu_seconds is None else "runs/paper-ablations-cpu") / f"{name}-s{seed}"
    record = finished_record(run_dir, arm_budget(name, a), seed)
    if record is None:
        record = train_arm(name, seed, a, train, test, run_dir)
    else:
        print(f"{name} seed {seed}: trained earlier ({run_dir / ARM_RECORD}), scored again", flush=True)
    return score_arm(run_dir, record, x, a.iw_samples)


def seed_average(runs: list[dict]) -> dict:
    """An arm's scores over its seeds: the mean NLL and ELBO, the NLL's image-level standard error, the seeds themselves."""
    return {"seeds": runs, "nll": sum(r["nll"] for r in runs) / len(runs),
            "nll_stderr": math.sqrt(sum(r["nll_stderr"] ** 2 for r in runs)) / len(runs),
            "elbo": sum(r["elbo"] for r in runs) / len(runs), "active_units": runs[0]["active_units"]}


def keep_or_drop(arm: torch.Tensor, baseline: torch.Tensor) -> tuple[Effect, str]:
    """The NLL change of an arm against the baseline, from (seeds, images) log p(x) of both (the same seeds,
    the same images), seed-aware, and the repo's one verdict rule on it: kept when the change is a
    significant drop, dropped when a significant rise, else no clear effect."""
    effect = paired_effect((baseline - arm).tolist())  # NLL(arm) - NLL(baseline), image by image, seed by seed
    return effect, {REPRODUCED: "kept", REVERSED: "dropped"}.get(verdict(effect, claimed_sign=-1), "no clear effect")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lvae.experiments.ablations", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=flags.integer(1, 10_000), default=12)
    ap.add_argument("--seeds", type=flags.integer(1, 100), help="seeds per arm (default 2; 3 for issue 17's arms, bf16 and ema)")
    ap.add_argument("--equal-cpu-seconds", type=flags.real(above=0.0), metavar="S",
                    help="train each arm until it has used S CPU seconds (epochs counted, schedules over --epochs) instead of --epochs")
    ap.add_argument("--iw-samples", type=flags.integer(1, 1_000_000), default=100)
    ap.add_argument("--limit", type=flags.integer(1, 10_000), default=2000)
    ap.add_argument("--only", nargs="*", choices=sorted(ROWS))
    ap.add_argument("--out", type=flags.output_file(".json"), help="default results/paper-ablations.json (-cpu.json with --equal-cpu-seconds)")
    a = ap.parse_args(argv)
    check_budget(a.epochs)
    cpu = a.equal_cpu_seconds is not None
    if cpu and not a.equal_cpu_seconds > 0:
        raise SystemExit(f"error: --equal-cpu-seconds must be > 0, got {a.equal_cpu_seconds}")
    names = a.only or list(EQUAL_CPU_ROWS if cpu else EQUAL_EPOCH_ROWS)
    if a.seeds is None:
        a.seeds = 3 if set(names) & {"bf16", "ema"} else 2
    a.out = a.out or Path("results/paper-ablations-cpu.json" if cpu else "results/paper-ablations.json")
    train, test = load_split("mnist", "train"), load_split("mnist", "test")
    x = evaluation_inputs(test.head(a.limit), "bernoulli")
    rows, per_image = {}, {}
    for name in names:
        seeds = [run_arm(name, seed, a, train, test, x) for seed in range(a.seeds)]
        per_image[name] = torch.stack([p for _, p in seeds])  # (seeds, images) log p(x)
        runs = [r for r, _ in seeds]
        row = {"name": name, "what": ROWS[name][0], "overrides": {k: str(v) for k, v in ROWS[name][1].items()},
               "training": {"epochs": a.epochs, "train_seconds": sum(r["train_seconds"] for r in runs) / len(runs)} if not cpu else
                           {"cpu_seconds_budget": a.equal_cpu_seconds, "schedule_epochs": a.epochs, "epochs_reached": [r["epochs"] for r in runs],
                            "cpu_seconds": [r["cpu_seconds"] for r in runs], "train_seconds": sum(r["train_seconds"] for r in runs) / len(runs)},
               **seed_average(runs), "iw_samples": a.iw_samples, "images": len(x)}
        if name != "baseline" and "baseline" in per_image:
            effect, word = keep_or_drop(per_image[name], per_image["baseline"])
            row.update(nll_change=effect.mean, nll_change_low=effect.low, nll_change_high=effect.high,
                       verdict=f"{word} ({effect.describe()})")
        rows[name] = row
        print(f"{name:10s} NLL {row['nll']:.2f}  active {row['active_units']}  {row.get('verdict', '')}", flush=True)
        a.out.parent.mkdir(exist_ok=True)
        budget = (f"{a.epochs} epochs each (at least twice the longest warm-up)" if not cpu else
                  f"{a.equal_cpu_seconds:g} CPU seconds each (whole epochs, the last one passing the budget; schedules laid out over {a.epochs} epochs)")
        a.out.write_text(json.dumps({"hardware": hardware(), "note": (
            f"{budget}, {a.seeds} seed(s) per arm, NLL with K = {a.iw_samples} "
            f"on the first {a.limit} test images, averaged over seeds; a change is kept if the 95 % interval of its NLL change "
            "against `baseline` (paired by image and by seed, seed spread included: lvae/experiments/effects.py) lies below zero. Rows rank "
            "changes at a small budget; they are not the paper's long runs."), "rows": list(rows.values())}, indent=1) + "\n")


if __name__ == "__main__":
    main()
