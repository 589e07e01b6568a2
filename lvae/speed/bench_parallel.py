"""How to spend this machine's cores on training: threads in one process, or processes under torchrun.

    python -m lvae.speed.bench_parallel [--config paper] [--epochs 2] [--limit 30000] [--save results/bench-parallel.json]

Each layout runs the same whole `python -m lvae train` command (the data, the sampler,
the per-step logging, DDP's gradient all-reduce where there is one) on the first `--limit`
training images, and its rate is read from the run's own `epochs.jsonl` (seconds in
training steps, after the first epoch, which pays for start-up). The layouts are run in
turn, twice, and each keeps its faster round, so a neighbour that woke up during one
round does not decide the verdict. The fastest layout is the one to use on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from lvae.training import read_jsonl

# name -> (processes, threads per process)
LAYOUTS: dict[str, tuple[int, int]] = {"1 process x 1 thread": (1, 1), "1 process x all threads": (1, 0),
                                       "torchrun: 1 process per core x 1 thread": (0, 1)}


def command(processes: int, train_args: list[str]) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "lvae", "train", *train_args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
            "-m", "lvae", "train", *train_args]


def images_per_epoch(limit: int, batch: int, processes: int) -> int:
    """What the trainer's DistributedSampler (drop_last) hands out per epoch, over all ranks."""
    return (limit // processes) // (batch // processes) * batch


def run_layout(processes: int, threads: int, config: str, epochs: int, limit: int, data_root: Path | None,
               cwd: Path | None = None) -> float:
    """Training images per second of one layout, from its run's epochs.jsonl (first epoch left out);
    `cwd`: the source tree whose `lvae` runs (`python -m` imports from the working directory first)."""
    with tempfile.TemporaryDirectory(prefix="lvae-bench-parallel-") as tmp:
        args = ["--config", config, "--epochs", str(epochs), "--limit", str(limit), "--no-progress", "--out", f"{tmp}/run"]
        if data_root is not None:
            args += ["--data-root", str(data_root)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run(command(processes, args), env=env, capture_output=True, text=True, cwd=cwd)
        if proc.returncode:
            raise SystemExit(f"error: {' '.join(command(processes, args))} exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
        rows = read_jsonl(Path(tmp) / "run" / "epochs.jsonl")[1:]
        cfg = json.loads((Path(tmp) / "run" / "config.json").read_text())
    return images_per_epoch(limit, cfg["train"]["batch_size"], processes) * len(rows) / sum(r["seconds"] for r in rows)


def bench(config: str, epochs: int, limit: int, rounds: int, data_root: Path | None) -> dict[str, Any]:
    from lvae.evaluation import hardware

    if epochs < 2:
        raise SystemExit("error: --epochs must be at least 2 (the first epoch pays for start-up and is not counted)")
    cores = os.cpu_count() or 1
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, (processes, threads) in LAYOUTS.items():
            rate = run_layout(processes or cores, threads or cores, config, epochs, limit, data_root)
            best[name] = max(best.get(name, 0.0), rate)
    base = best["1 process x 1 thread"]
    rows = [{"layout": name, "processes": p or cores, "threads": t or cores, "images_per_s": rate, "vs_one_thread": rate / base}
            for (name, (p, t)), rate in zip(LAYOUTS.items(), best.values())]
    return {"config": config, "epochs": epochs, "limit": limit, "rounds": rounds, "hardware": hardware(), "rows": rows,
            "fastest": max(rows, key=lambda r: r["images_per_s"])["layout"]}


def table(b: dict[str, Any]) -> str:
    lines = [f"`python -m lvae.speed.bench_parallel`: the `{b['config']}` config trained by whole `train` commands on "
             f"{b['limit']} images, {b['epochs'] - 1} timed epoch(s), best of {b['rounds']} rounds ({b['hardware']['cpu']}, "
             f"{b['hardware']['cores']} cores). Fastest: **{b['fastest']}**.", "",
             "| layout | processes × threads | images/s | against 1 thread |", "|---|---|---|---|"]
    for r in b["rows"]:
        lines.append(f"| {r['layout']} | {r['processes']} × {r['threads']} | {r['images_per_s']:.0f} | {r['vs_one_thread']:.2f}× |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lvae.speed.bench_parallel", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="paper", choices=("paper", "seed"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=30000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data-root", type=Path)
    ap.add_argument("--save", type=Path, help="also write the JSON here (e.g. results/bench-parallel.json)")
    a = ap.parse_args(argv)
    result = bench(a.config, a.epochs, a.limit, a.rounds, a.data_root)
    if a.save:
        a.save.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
