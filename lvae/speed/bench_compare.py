"""What a speed change bought: this tree against a git revision, workload by workload, in one run.

    python -m lvae.speed.bench_compare REV [--compile] [--rounds 2] [--steps 20] [--threads 1 2] [--workloads NAME ...]
                                     [--command-limit N] [--save results/bench-compare.json]

REV (e.g. the commit before the change) is checked out into a temporary git worktree. Every
`make bench` workload is measured in both trees by this tree's harness (lvae.speed.workload, run by
path with the tree's `lvae` first on the import path), and so is the whole command
`python -m lvae train --config paper --epochs 3`, timed from start to exit (start-up, data, compiling,
test passes: everything a user waits for). Both run in turn, before then after, for `--rounds`
rounds, and each side keeps its best round: a neighbour that woke up during one round slows one pair,
not the verdict. With `--compile` the after side runs torch.compile'd, and its whole command compiles
into an empty kernel cache every round, so the compile time is paid in full (`--warm-cache`: into the
user's cache, as a repeated or resumed run finds it; Python-side tracing is paid either way). The four ratios issue 30
targets are marked. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lvae.speed import machine
from lvae.speed.bench import WORKLOADS
from lvae.speed.workload import run_by_path

TRAIN_COMMAND = "train-paper-command"  # the whole `python -m lvae train --config paper --epochs 3` command, at all threads
# (workload, threads or None for any) -> the after / before ratio issue 30 asks for
TARGETS: dict[tuple[str, int | None], float] = {("train-paper", 1): 1.4, ("train-paper-best", None): 2.0,
                                                ("iw-eval-paper", None): 1.5, (TRAIN_COMMAND, None): 1.3}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def workload_rate(tree: Path, name: str, steps: int, threads: int, compile: bool = False) -> float:
    return run_by_path(name, steps, threads, tree, compile=compile)["throughput"]


def command_rate(tree: Path, threads: int, data_root: Path, epochs: int, limit: int | None, compile: bool = False,
                 warm: bool = False) -> float:
    """Training images (epochs x the images trained on) per second of the whole `train --config paper` command
    in `tree`, start to exit; with `compile`, compiled into an empty kernel cache, or with `warm` into the
    user's (lvae.compiling.cache_dir: what a repeated run finds)."""
    with tempfile.TemporaryDirectory(prefix="lvae-bench-command-") as tmp:
        args = ["--config", "paper", "--epochs", str(epochs), "--out", f"{tmp}/run", "--no-progress", "--data-root", str(data_root),
                *(["--limit", str(limit)] if limit else []), *(["--compile"] if compile else [])]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), **({} if warm else {"TORCHINDUCTOR_CACHE_DIR": f"{tmp}/kernels"})}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "lvae", "train", *args], cwd=tree, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"error: python -m lvae train {' '.join(args)} failed in {tree}:\n{proc.stderr[-3000:]}")
    return epochs * (limit or 60000) / seconds


def target(name: str, threads: int) -> float | None:
    return TARGETS.get((name, threads), TARGETS.get((name, None)))


def compare(rev: str, rounds: int, steps: int, threads: list[int], data_root: Path, workloads: list[str], compile: bool = False,
            epochs: int = 3, limit: int | None = None, warm: bool = False) -> dict[str, Any]:
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
                        on = compile and side == "after"
                        rate = (command_rate(tree, n, data_root, epochs, limit, on, warm) if name == TRAIN_COMMAND
                                else workload_rate(tree, name, steps, n, on))
                        best[job][side] = max(best[job][side], rate)
        finally:
            git("worktree", "remove", "--force", str(before))
    rows = [{"workload": name, "threads": n, **rates, "speedup": rates["after"] / rates["before"], "target": target(name, n),
             "unit": "images/s" if name.startswith("train") else "importance samples/s"} for (name, n), rates in best.items()]
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"before": git("rev-parse", "--short", rev), "after": git("rev-parse", "--short", "HEAD") + (" + changes" if dirty else ""),
            "compile": compile, "rounds": rounds, "steps": steps, "command": {"epochs": epochs, "limit": limit, "warm_cache": warm},
            "hardware": hardware(), "cpu": machine.cpu(), "rows": rows}


def table(b: dict[str, Any]) -> str:
    chip = machine.describe(b["cpu"]) if "cpu" in b else b["hardware"]["cpu"]
    cache = "loading its kernels from the user's cache" if b.get("command", {}).get("warm_cache") else "compiling from an empty cache"
    mode = f" (after: torch.compile'd, the whole command {cache})" if b.get("compile") else ""
    targets = any("target" in r for r in b["rows"])  # comparisons from before issue 30 had no target column
    lines = [f"`{b['before']}` (before) against `{b['after']}` (after){mode}, best of {b['rounds']} interleaved rounds each, "
             f"{chip}, {b['hardware']['cores']} cores:", "",
             "| workload | threads | before | after | after / before |" + (" target |" if targets else ""),
             "|---|---|---|---|---|" + ("---|" if targets else "")]
    for r in b["rows"]:
        line = f"| {r['workload']} | {r['threads']} | {r['before']:.0f} | {r['after']:.0f} {r['unit']} | **{r['speedup']:.2f}×** |"
        if targets:
            line += "" if r.get("target") is None else f" ≥ {r['target']:.1f}× ({'met' if r['speedup'] >= r['target'] else '**missed**'})"
            line += " |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lvae.speed.bench_compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev", help="the git revision to compare against (before the change)")
    ap.add_argument("--compile", action="store_true", help="the after side torch.compile'd (workloads and the whole command)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 and every core)")
    ap.add_argument("--workloads", nargs="+", choices=[*WORKLOADS, TRAIN_COMMAND], default=[*WORKLOADS, TRAIN_COMMAND])
    ap.add_argument("--command-epochs", type=int, default=3, help="epochs of the whole command (default 3)")
    ap.add_argument("--command-limit", type=int, help="training images of the whole command (default: all 60000)")
    ap.add_argument("--warm-cache", action="store_true",
                    help="the compiled whole command finds the user's kernel cache (a repeated run) instead of an empty one")
    ap.add_argument("--data-root", type=Path, default=Path(os.environ.get("LVAE_DATA", "data")), help="MNIST cache for the whole command")
    ap.add_argument("--save", type=Path, help="also write the JSON here (e.g. results/bench-compare.json)")
    a = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    result = compare(a.rev, a.rounds, a.steps, a.threads or sorted({1, cores}), a.data_root.resolve(), a.workloads, a.compile,
                     a.command_epochs, a.command_limit, a.warm_cache)
    if a.save:
        a.save.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
