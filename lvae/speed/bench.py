"""`make bench`: how fast training and evaluation run, as a fraction of this machine's peak.

    python -m lvae.speed.bench [--json] [--save results/bench.json] [--steps N] [--threads 1 2]

Every workload is measured once per thread count (default: 1 and every core), side by
side, against the peak measured in the same run with the same thread count: the best of
several large fp32 matmuls (torch.mm, 2048 x 2048). FLOPs are counted by
`torch.utils.flop_counter.FlopCounterMode` on one real step (matmuls and convolutions,
forward and backward; element-wise work is not counted, so the ratio is a lower bound
on how busy the cores are). Each workload runs in its own process, so its peak resident
memory (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

# name -> goal as a fraction of peak (from the issue); None: reported, no goal
WORKLOADS: dict[str, float | None] = {"train-seed": 0.5, "train-paper": 0.6, "iw-eval-paper": 0.7, "iw-eval-seed": None}


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 GFLOP/s of an n x n matmul: the yardstick."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def count_flops(fn: Callable[[], Any]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def time_it(fn: Callable[[], Any], steps: int, warmup: int = 3) -> float:
    """Best seconds per call over `steps` calls after `warmup` calls.

    The best, like the matmul peak, because on a shared machine every other statistic
    measures the neighbours: the fastest call is the one least disturbed.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def training_step(config_name: str) -> tuple[Callable[[], Any], int]:
    """One optimiser step of the named config at its batch size; returns (step, images per step)."""
    from lvae.config import named_config
    from lvae.data import binarize
    from lvae.losses import compute_loss
    from lvae.model import build_model, use_fast_layout
    from lvae.training import make_optimizer

    cfg = named_config(config_name)
    model = use_fast_layout(build_model(cfg.model_kind, cfg.model).train(), torch.device("cpu"))
    opt = make_optimizer(model.parameters(), cfg.train.lr, torch.device("cpu"))
    x = torch.rand(cfg.train.batch_size, *cfg.model.image_shape)
    if cfg.model.likelihood == "bernoulli":
        x = binarize(x)

    def step() -> None:
        terms = compute_loss(model(x), x, cfg.model.likelihood, 1.0, cfg.objective.kl_mode, cfg.objective.free_bits, cfg.model.output_variance)
        opt.zero_grad(set_to_none=True)
        terms.loss.backward()
        opt.step()

    return step, cfg.train.batch_size


def iw_pass(config_name: str, k: int = 1000, images: int = 4) -> tuple[Callable[[], Any], int]:
    """Importance weights for `images` images with K samples each; returns (pass, samples per pass)."""
    from lvae.config import named_config
    from lvae.evaluation import importance_log_weights
    from lvae.fusion import folded_for_inference
    from lvae.model import build_model

    cfg = named_config(config_name)
    model = folded_for_inference(build_model(cfg.model_kind, cfg.model))  # as iw_log_likelihood scores
    x = torch.bernoulli(torch.rand(images, *cfg.model.image_shape))
    return (lambda: importance_log_weights(model, x, k, cfg.model.likelihood)), k * images


def run_one(name: str, steps: int) -> dict[str, Any]:
    if name.startswith("train-"):
        fn, images = training_step(name.removeprefix("train-"))
        what = "per step"
    else:
        fn, images = iw_pass(name.removeprefix("iw-eval-"))
        what = "per 4 images x K=1000"
    flops = count_flops(fn)
    seconds = time_it(fn, steps)
    unit = "images/s" if name.startswith("train-") else "importance samples/s"
    row = {"name": name, "throughput": images / seconds, "unit": unit, "time_s": seconds, "time_what": what,
           "gflops": flops / seconds / 1e9, "flops_per_call": flops,
           "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if name.startswith("train-"):
        row["epoch_s"] = 60000 / row["throughput"]
        row["time_what"] += f" (epoch ≈ {row['epoch_s']:.1f} s)"
    return row


def bench_module(tree: Path | None) -> str:
    """This module's name in `tree`: revisions from before the speed tools had a folder of their own kept it at lvae.bench."""
    return "lvae.bench" if tree is not None and (Path(tree) / "lvae" / "bench.py").is_file() else "lvae.speed.bench"


def run_in_own_process(name: str, steps: int, threads: int, tree: Path | None = None) -> dict[str, Any]:
    """One workload's row, measured by `python -m lvae.speed.bench --one NAME` in a fresh process (its own peak
    memory); `tree`: the source tree whose `lvae` runs (`python -m` imports from the working directory first)."""
    module = bench_module(tree)
    proc = subprocess.run([sys.executable, "-m", module, "--one", name, "--steps", str(steps), "--threads", str(threads)],
                          cwd=tree, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"error: `python -m {module} --one {name}` failed in {tree or Path.cwd()}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def bench_threads(steps: int, threads: int) -> dict[str, Any]:
    """Every workload with `threads` threads, each in its own process, against the peak of as many threads."""
    torch.set_num_threads(threads)
    peak = max(matmul_peak() for _ in range(2))
    rows = []
    for name, goal in WORKLOADS.items():
        row = run_in_own_process(name, steps, threads)
        row.update(ratio=row["gflops"] / peak, goal=goal, met=None if goal is None else row["gflops"] / peak >= goal)
        rows.append(row)
    peak_after = matmul_peak()  # if this differs much from `peak`, something else was using the CPU
    return {"threads": threads, "peak_gflops": peak, "peak_gflops_after": peak_after, "rows": rows}


def bench(steps: int, threads: list[int]) -> dict[str, Any]:
    from lvae.evaluation import hardware

    runs = [bench_threads(steps, n) for n in threads]
    faster = {row["name"]: max(runs, key=lambda r: next(x["throughput"] for x in r["rows"] if x["name"] == row["name"]))["threads"]
              for row in runs[0]["rows"]}
    return {"hardware": hardware(), "runs": runs, "faster_threads": faster}


def bench_table(b: dict[str, Any]) -> str:
    """`make bench` as a table: each thread count's throughput and its fraction of the peak it measured."""
    if "runs" not in b:  # a bench from before thread counts were compared
        return single_bench_table(b)
    runs = b["runs"]
    peaks = ", ".join(f"{r['peak_gflops']:.1f} GFLOP/s with {r['threads']} thread(s)" for r in runs)
    head = "| workload | " + " | ".join(f"{r['threads']} thread(s) | of peak" for r in runs) + " | goal | faster |"
    lines = [f"Measured fp32 matmul peak ({b['hardware']['cpu']}): **{peaks}**. Each workload runs in its own process, "
             "once per thread count; its fraction is of the peak with the same threads.", "", head,
             "|---|" + "---|---|" * len(runs) + "---|---|"]
    for i, row in enumerate(runs[0]["rows"]):
        cells = []
        for r in runs:
            x = r["rows"][i]
            rate, unit = _throughput(x)
            cells.append(f"{rate:.0f} {unit} | {100 * x['ratio']:.0f} %")
        goal = f"≥ {100 * row['goal']:.0f} %" if row.get("goal") else ""
        lines.append(f"| {row['name']} | " + " | ".join(cells) + f" | {goal} | {b['faster_threads'][row['name']]} thread(s) |")
    cores = b["hardware"]["cores"]
    slower = sorted(name for name, n in b["faster_threads"].items() if n != cores)
    lines += ["", f"Every command uses torch's default thread count, one per core ({cores} here): "
              + ("not measured in this run." if cores not in [r["threads"] for r in runs] else
                 "the faster column for every workload on this machine." if not slower else
                 f"**slower here for {', '.join(slower)}**; set `OMP_NUM_THREADS` to the faster count for those.")]
    return "\n".join(lines)


def single_bench_table(b: dict[str, Any]) -> str:
    lines = [f"Measured fp32 matmul peak: **{b['peak_gflops']:.1f} GFLOP/s** ({b['hardware']['threads']} threads, {b['hardware']['cpu']}).",
             "", "| workload | throughput | time | GFLOP/s | of peak | goal | peak memory |", "|---|---|---|---|---|---|---|"]
    for r in b["rows"]:
        goal = f"≥ {100 * r['goal']:.0f} %" if r.get("goal") else ""
        rate, unit = _throughput(r)
        lines.append(f"| {r['name']} | {rate:.0f} {unit} | {r['time_s']:.2f} s {r['time_what']} | {r['gflops']:.1f} "
                     f"| {100 * r['ratio']:.0f} % | {goal} | {r['peak_mb']:.0f} MB |")
    return "\n".join(lines)


def _throughput(row: dict[str, Any]) -> tuple[float, str]:
    """A bench row's rate and its unit (rows written before `unit` existed held IW rates as samples_per_s)."""
    if "unit" in row:
        return row["throughput"], row["unit"]
    if "samples_per_s" in row:
        return row["samples_per_s"], "importance samples/s"
    return row["images_per_s"], "images/s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lvae.speed.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", help="also write the JSON to this file (e.g. results/bench.json)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", help="thread counts to compare (default: 1 and every core)")
    ap.add_argument("--one", choices=sorted(WORKLOADS), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        torch.set_num_threads(a.threads[0] if a.threads else torch.get_num_threads())
        print(json.dumps(run_one(a.one, a.steps)))
        return 0
    cores = os.cpu_count() or 1
    result = bench(a.steps, a.threads or sorted({1, cores}))
    if a.save:
        with open(a.save, "w") as f:
            f.write(json.dumps(result, indent=1) + "\n")
    if a.json:
        print(json.dumps(result))
    else:

        print(bench_table(result))
        for r in result["runs"]:
            print(f"(matmul peak with {r['threads']} thread(s) re-measured after the workloads: {r['peak_gflops_after']:.1f} GFLOP/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
