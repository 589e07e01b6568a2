"""What the fine-tuning stages of `make paper-best` buy, seed by seed: the seed-aware paired effect of each.

    python -m lvae.experiments.stage_ablations [--epochs 8] [--seeds 3] [--iw-samples 100] [--limit 2000]

Each seed's base is the equal-CPU ablation's `baseline` run of that seed (lvae/experiments/ablations.py
with --equal-cpu-seconds 240 --epochs 16, reused from runs/paper-ablations-cpu/ when it is there, else
trained): the `paper` ladder after about 20 epochs at a constant lr of 2e-3, its warm-up over. Three arms
continue the same base weights for the same --epochs, as `train --finetune` does (beta held at its end):

    continue      the base's own lr, 2e-3, constant: the same epochs of more main-stage training
    finetune      the paper's fine-tuning: lr 2e-4 -> 0 (cosine over the arm), the ELBO
    finetune-iw   the same lr, with the importance-weighted bound, K = 10 (Burda et al., 2016)

Each arm is scored per image like the ablations (K = --iw-samples on the first --limit test images, the fixed
binarization) and compared, seed by seed and image by image, with the arm it changes: `finetune` against
`continue` (what the lower lr buys over as many epochs of more training), `finetune-iw` against `finetune`
(what the IW bound buys over the ELBO at the same lr and epochs). The arms run equal epochs, not equal CPU:
the recipe's stages are counted in epochs, and an IW epoch costs several ELBO epochs; each arm's CPU seconds
are recorded beside it. Rows go to results/paper-ablations-stages.json and runs/paper-ablations-stages/.
The base has not annealed its lr, while `make paper-best`'s main stage ends at 2e-4 on a cosine: what
`finetune` buys here is an upper bound on what the same stage buys there (the recipe's own stage gains,
one seed, are in results/paper-best.json).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from lvae import checkpoint as ckpt
from lvae import flags
from lvae.cli import build_parser, finetune_config
from lvae.config import RunConfig, validate
from lvae.data import load_split
from lvae.evaluation import hardware
from lvae.experiments.ablations import ARM_RECORD, finished_record, keep_or_drop, run_arm, score_arm, seed_average
from lvae.training import Trainer, evaluation_inputs
from lvae.weights import load_trained

cpu_clock = time.process_time  # this process's CPU seconds, every thread


@dataclass(frozen=True)
class StageArm:
    name: str
    what: str
    flags: tuple[str, ...]  # `train --finetune BASE` flags beyond --out and --epochs
    against: str | None  # the arm it changes: its effect is NLL(this) - NLL(that)


ARMS = (
    StageArm("continue", "more of the main stage: the base's own lr, 2e-3, constant", ("--lr", "2e-3"), None),
    StageArm("finetune", "fine-tuning: lr 2e-4 -> 0 (cosine), the ELBO", ("--lr", "2e-4", "--lr-schedule", "cosine"), "continue"),
    StageArm("finetune-iw", "fine-tuning with the IW bound, K = 10: lr 2e-4 -> 0 (cosine)",
             ("--lr", "2e-4", "--lr-schedule", "cosine", "--objective", "iw", "--iw-train", "10"), "finetune"),
)


def arm_config(arm: StageArm, base_dir: Path, base_cfg: RunConfig, run_dir: Path, epochs: int) -> RunConfig:
    """The config `python -m lvae train --finetune BASE --out RUN --epochs E FLAGS` would train: the same code path."""
    a = build_parser().parse_args(["train", "--finetune", str(base_dir), "--out", str(run_dir), "--epochs", str(epochs), *arm.flags])
    cfg = finetune_config(a, base_cfg)
    validate(cfg)
    return cfg


def train_arm(arm: StageArm, seed: int, base_dir: Path, run_dir: Path, epochs: int, budget: dict, train, test) -> dict:
    """Continue the base's weights as `arm` says; record the CPU it used (test passes left out) in RUN/arm.json."""
    base_cfg, base_model = load_trained(base_dir)  # read once: its config for the arm's, its weights to start from
    trainer = Trainer(arm_config(arm, base_dir, base_cfg, run_dir, epochs), run_dir, train, test, progress=False)
    trainer.model.load_state_dict(base_model.state_dict())
    cpu0, t0 = cpu_clock(), time.perf_counter()
    trainer.fit()
    record = {"budget": budget, "seed": seed, "epochs": trainer.state.epoch, "train_seconds": time.perf_counter() - t0,
              "cpu_seconds": cpu_clock() - cpu0 - trainer.test_cpu_seconds}
    ckpt.write_atomic(run_dir / ARM_RECORD, lambda f: f.write(json.dumps(record, indent=1).encode()))
    return record


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lvae.experiments.stage_ablations", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=flags.integer(1, 10_000), default=8, help="epochs of every arm")
    ap.add_argument("--seeds", type=flags.integer(1, 100), default=3)
    ap.add_argument("--iw-samples", type=flags.integer(1, 1_000_000), default=100)
    ap.add_argument("--limit", type=flags.integer(1, 10_000), default=2000)
    ap.add_argument("--base-cpu-seconds", type=flags.real(above=0.0), default=240.0, help="the base's training CPU (the equal-CPU ablation's)")
    ap.add_argument("--base-epochs", type=flags.integer(1, 10_000), default=16, help="the base's schedule horizon (the equal-CPU ablation's)")
    ap.add_argument("--out", type=flags.output_file(".json"), default=Path("results/paper-ablations-stages.json"))
    a = ap.parse_args(argv)
    base_args = argparse.Namespace(epochs=a.base_epochs, equal_cpu_seconds=a.base_cpu_seconds, iw_samples=a.iw_samples)
    train, test = load_split("mnist", "train"), load_split("mnist", "test")
    x = evaluation_inputs(test.head(a.limit), "bernoulli")
    base_dirs = [Path("runs/paper-ablations-cpu") / f"baseline-s{seed}" for seed in range(a.seeds)]
    base = [run_arm("baseline", seed, base_args, train, test, x) for seed in range(a.seeds)]  # reused when trained earlier
    per_image, rows = {"base": torch.stack([p for _, p in base])}, []
    for arm in ARMS:
        budget = {"base_cpu_seconds": a.base_cpu_seconds, "base_epochs": a.base_epochs, "epochs": a.epochs, "flags": list(arm.flags)}
        seeds = []
        for seed, base_dir in enumerate(base_dirs):
            run_dir = Path("runs/paper-ablations-stages") / f"{arm.name}-s{seed}"
            record = finished_record(run_dir, budget, seed) or train_arm(arm, seed, base_dir, run_dir, a.epochs, budget, train, test)
            seeds.append(score_arm(run_dir, record, x, a.iw_samples))
        per_image[arm.name] = torch.stack([p for _, p in seeds])
        runs = [r for r, _ in seeds]
        row = {"name": arm.name, "what": arm.what, "flags": list(arm.flags), "against": arm.against,
               "training": {"epochs": a.epochs, "train_seconds": sum(r["train_seconds"] for r in runs) / len(runs),
                            "cpu_seconds": [r["cpu_seconds"] for r in runs]},
               **seed_average(runs), "iw_samples": a.iw_samples, "images": len(x)}
        against = arm.against or "base"
        effect, word = keep_or_drop(per_image[arm.name], per_image[against])
        row.update(nll_change=effect.mean, nll_change_low=effect.low, nll_change_high=effect.high,
                   verdict=f"{word} against {'the base' if against == 'base' else f'`{against}`'} ({effect.describe()})")
        rows.append(row)
        print(f"{arm.name:12s} NLL {row['nll']:.2f}  {row['verdict']}", flush=True)
        a.out.parent.mkdir(exist_ok=True)
        ckpt.write_atomic(a.out, lambda f: f.write((json.dumps({"hardware": hardware(), "note": (
            f"Each arm continues, for {a.epochs} epochs, the equal-CPU ablation's `baseline` run of the same seed ({a.base_cpu_seconds:g} "
            f"CPU seconds, constant lr 2e-3: base NLL {seed_average([r for r, _ in base])['nll']:.2f}), {a.seeds} seed(s) per arm, NLL "
            f"with K = {a.iw_samples} on the first {a.limit} test images, averaged over seeds; each arm is compared with the one it changes, "
            "paired by image and by seed, seed spread included (lvae/experiments/effects.py): kept when the 95 % interval of its NLL change "
            "lies below zero. Equal epochs, not equal CPU (each arm's CPU seconds are in its row). The base has not annealed its lr: "
            "what fine-tuning buys here is an upper bound on what it buys after paper-best's cosine main stage."),
            "rows": rows}, indent=1) + "\n").encode()))


if __name__ == "__main__":
    main()
