"""What a speed change bought: this tree against a git revision, workload by workload, in one run.

    python -m lvae.speed.bench_compare REV [--rounds 2] [--steps 20] [--threads 1 2] [--workloads NAME ...]
                                     [--save results/bench-compare.json]

REV (e.g. the commit before the change) is checked out into a temporary git worktree.
Every `make bench` workload (`python -m lvae.speed.bench --one NAME`) and one whole training
command (`python -m lvae train --config paper`, read from its epochs.jsonl as
`lvae.speed.bench_parallel` does) is run from both trees in turn, before then after, for
`--rounds` rounds, and each side keeps its best round: a neighbour that woke up during
one round slows one pair, not the verdict. `python -m` puts the working directory first on
the import path, so each tree runs its own `lvae`. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from lvae.speed.bench import WORKLOADS, run_in_own_process
from lvae.speed.bench_parallel import run_layout

TRAIN_COMMAND = "train-paper-command"  # the whole `python -m lvae train --config paper` command, at all threads


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def workload_rate(tree: Path, name: str, steps: int, threads: int) -> float:
    return run_in_own_process(name, steps, threads, tree)["throughput"]


def compare(rev: str, rounds: int, steps: int, threads: list[int], data_root: Path, workloads: list[str],
            epochs: int = 2, limit: int = 20000) -> dict[str, Any]:
    from lvae.evaluation import hardware

    here = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="lvae-bench-before-") as tmp:
        before = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(before), rev)
        try:
            jobs = [(name, n) for n in threads for name in WORKLOADS if name in workloads]
            jobs += [(TRAIN_COMMAND, max(threads))] if TRAIN_COMMAND in workloads else []
            best: dict[tuple[str, int], dict[str, float]] = {job: {"before": 0.0, "after": 0.0} for job in jobs}
            for _ in range(rounds):
                for job in jobs:
                    name, n = job
                    for side, tree in (("before", before), ("after", here)):
                        rate = (run_layout(1, n, "paper", epochs, limit, data_root, cwd=tree) if name == TRAIN_COMMAND
                                else workload_rate(tree, name, steps, n))
                        best[job][side] = max(best[job][side], rate)
        finally:
            git("worktree", "remove", "--force", str(before))
    rows = [{"workload": name, "threads": n, **rates, "speedup": rates["after"] / rates["before"],
             "unit": "images/s" if name.startswith("train") else "importance samples/s"} for (name, n), rates in best.items()]
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"before": git("rev-parse", "--short", rev), "after": git("rev-parse", "--short", "HEAD") + (" + changes" if dirty else ""),
            "rounds": rounds, "steps": steps, "hardware": hardware(), "rows": rows}


def table(b: dict[str, Any]) -> str:
    lines = [f"`{b['before']}` (before) against `{b['after']}` (after), best of {b['rounds']} interleaved rounds each, "
             f"{b['hardware']['cpu']}, {b['hardware']['cores']} cores:", "",
             "| workload | threads | before | after | after / before |", "|---|---|---|---|---|"]
    lines += [f"| {r['workload']} | {r['threads']} | {r['before']:.0f} | {r['after']:.0f} {r['unit']} | **{r['speedup']:.2f}×** |"
              for r in b["rows"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lvae.speed.bench_compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev", help="the git revision to compare against (before the change)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 and every core)")
    ap.add_argument("--workloads", nargs="+", choices=[*WORKLOADS, TRAIN_COMMAND], default=[*WORKLOADS, TRAIN_COMMAND])
    ap.add_argument("--data-root", type=Path, default=Path(os.environ.get("LVAE_DATA", "data")), help="MNIST cache for the whole command")
    ap.add_argument("--save", type=Path, help="also write the JSON here (e.g. results/bench-compare.json)")
    a = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    result = compare(a.rev, a.rounds, a.steps, a.threads or sorted({1, cores}), a.data_root.resolve(), a.workloads)
    if a.save:
        a.save.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
