"""Measure the training speed options on this machine: images/s, each against fp32 eager.

    python -m lvae.speed.speed_options                    # seed and paper configs, CPU
    python -m lvae.speed.speed_options --config paper --device cuda --batch-size 256
    python -m lvae.speed.speed_options --config paper-best --option "fp32 eager" --option "bf16 eager" --threads 2

Every option trains its own copy of the model with the real `Trainer.step` (forward,
float32 loss, backward, clipping, Adam) on the same synthetic batch. The options are
timed in interleaved rounds (A B C D, A B C D, ...) and the median round is reported, so
a machine shared with other jobs slows all of them alike and the ratios stay fair. The
first steps of each option (warm-up, and compilation for `--compile`) are timed
separately and not counted. On a machine shared with other jobs, `--threads 1` keeps one
busy core from stalling every parallel kernel.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lvae.config import NAMED_CONFIGS, RunConfig, named_config
from lvae.data import synthetic_split
from lvae.training import Trainer

OPTIONS = (("fp32 eager", "off", False), ("bf16 eager", "bf16", False), ("fp32 compile", "off", True), ("bf16 compile", "bf16", True))


def synchronize(device: torch.device) -> None:
    """Wait for the device to finish (a no-op on the CPU), so a timer measures the work, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(cfg: RunConfig, batch_size: int, steps: int, rounds: int, warmup: int,
            options: tuple[tuple[str, str, bool], ...] = OPTIONS) -> list[dict]:
    """One row per option: images/s (median over rounds), ratio to the first option, warm-up seconds."""
    split = synthetic_split(max(batch_size, 64), seed=0)
    x = split.images[:batch_size]
    rows, trainers = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, amp, compiled in options:
            c = copy.deepcopy(cfg)
            c.train.amp, c.train.compile, c.train.batch_size = amp, compiled, batch_size
            t = Trainer(c, Path(tmp) / name.replace(" ", "-"), split, split, progress=False)
            t0 = time.perf_counter()
            for _ in range(warmup):
                t.step(x, False)
            synchronize(t.device)
            rows.append({"option": name, "warmup_s": time.perf_counter() - t0, "rounds": []})
            trainers.append(t)
        for _ in range(rounds):
            for row, t in zip(rows, trainers):
                t0 = time.perf_counter()
                for _ in range(steps):
                    t.step(x, False)
                synchronize(t.device)
                row["rounds"].append(steps * batch_size / (time.perf_counter() - t0))
    base = statistics.median(rows[0]["rounds"])
    for row in rows:
        row["images_per_s"] = statistics.median(row["rounds"])
        row["ratio"] = row["images_per_s"] / base
    return rows


def format_table(config: str, device: str, batch_size: int, rows: list[dict]) -> str:
    lines = [f"config {config}, {device}, batch {batch_size}, {torch.get_num_threads()} threads, torch {torch.__version__}",
             f"| option | images/s | vs {rows[0]['option']} | warm-up (s) |", "|---|---:|---:|---:|"]
    lines += [f"| {r['option']} | {r['images_per_s']:.0f} | {r['ratio']:.2f}x | {r['warmup_s']:.1f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lvae.speed.speed_options", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", choices=sorted(NAMED_CONFIGS), help="repeatable (default: seed and paper)")
    p.add_argument("--option", action="append", choices=[o[0] for o in OPTIONS],
                   help="repeatable (default: all four); rows keep the order above, and the first is what the others are compared with")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, help="default: the config's")
    p.add_argument("--steps", type=int, default=2, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice); 1 is steadier on a busy machine")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    for name in a.config or ["seed", "paper"]:
        cfg = named_config(name)
        cfg.train.device = a.device
        batch = a.batch_size or cfg.train.batch_size
        rows = measure(cfg, batch, a.steps, a.rounds, a.warmup, tuple(o for o in OPTIONS if o[0] in a.option) if a.option else OPTIONS)
        print(format_table(name, a.device, batch, rows), flush=True)
        print()


if __name__ == "__main__":
    main()
