"""`make bench`: how fast training and evaluation run, as a fraction of what this machine's matmul units can do.

    python -m lvae.speed.bench [--json] [--save results/bench.json] [--steps N] [--threads 1 2] [--compile]

Every workload (lvae.speed.workload) is measured once per thread count (default: 1 and every
core), side by side, against the peak measured in the same run with the same thread count: the best
of several large matmuls (torch.mm, 2048 x 2048), in fp32 and in bf16. A workload is judged against
the peak of the precision its matmuls run in (`paper-best` autocasts to bf16: the bf16 peak, many
times the fp32 one on a chip with AMX). FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode`
on one real step (matmuls and convolutions, forward and backward; element-wise work is not counted,
so the ratio is a lower bound on how busy the cores are). Each workload runs in its own process, so
its peak resident memory (ru_maxrss) is its own. Each training workload also says where its step's
time goes (lvae.speed.breakdown), and the run names the CPU and its bf16 flags (lvae.speed.machine).
With `--compile` every workload runs torch.compile'd; its first call, which pays for compiling, is
recorded beside the steady rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import torch

from lvae.speed import machine
from lvae.speed.breakdown import CATEGORIES
from lvae.speed.workload import WORKLOADS as WORKLOAD_SPECS
from lvae.speed.workload import count_flops, iw_pass, run_by_path, time_it, training_step  # noqa: F401 (the bench's API)

# name -> goal as a fraction of the peak of its precision (from the issues); None: reported, no goal
WORKLOADS: dict[str, float | None] = {name: goal for name, (_, _, goal) in WORKLOAD_SPECS.items()}
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_peak(n: int = 2048, repeats: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """Best GFLOP/s of an n x n matmul in `dtype`: the yardstick."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def peaks() -> dict[str, float]:
    """The best of two `matmul_peak`s in each precision, with the current thread count."""
    return {name: max(matmul_peak(dtype=dtype) for _ in range(2)) for name, dtype in PRECISIONS.items()}


def judged(row: dict[str, Any], peak: dict[str, float], goal: float | None) -> dict[str, Any]:
    """`row` with its fraction of the peak of its precision, its goal and whether it met it."""
    ratio = row["gflops"] / peak[row.get("precision", "fp32")]
    return {**row, "ratio": ratio, "goal": goal, "met": None if goal is None else ratio >= goal}


def bench_threads(steps: int, threads: int, compile: bool = False) -> dict[str, Any]:
    """Every workload with `threads` threads, each in its own process, against the peaks of as many threads."""
    torch.set_num_threads(threads)
    peak = peaks()
    rows = [judged(run_by_path(name, steps, threads, compile=compile, breakdown=name.startswith("train-")), peak, goal)
            for name, goal in WORKLOADS.items()]
    peak_after = matmul_peak()  # if this differs much from the fp32 peak, something else was using the CPU
    return {"threads": threads, "peak_gflops": peak["fp32"], "peak_gflops_bf16": peak["bf16"], "peak_gflops_after": peak_after,
            "rows": rows}


def bench(steps: int, threads: list[int], compile: bool = False) -> dict[str, Any]:
    from lvae.evaluation import hardware

    runs = [bench_threads(steps, n, compile) for n in threads]
    faster = {row["name"]: max(runs, key=lambda r: next(x["throughput"] for x in r["rows"] if x["name"] == row["name"]))["threads"]
              for row in runs[0]["rows"]}
    return {"hardware": hardware(), "cpu": machine.cpu(), "compile": compile, "runs": runs, "faster_threads": faster}


def bench_table(b: dict[str, Any]) -> str:
    """`make bench` as a table: each thread count's throughput and its fraction of the peak of its precision,
    then each training step's breakdown."""
    if "runs" not in b:  # a bench from before thread counts were compared
        return single_bench_table(b)
    runs = b["runs"]
    peaks = ", ".join(f"{r['peak_gflops']:.1f} GFLOP/s with {r['threads']} thread(s)" for r in runs)
    chip = machine.describe(b["cpu"]) if "cpu" in b else b["hardware"]["cpu"]
    bf16 = ("; bf16 matmul peak: **" + ", ".join(f"{r['peak_gflops_bf16']:.1f} GFLOP/s with {r['threads']} thread(s)" for r in runs)
            + "**. A workload's fraction is of the peak of its precision (bf16 rows: the bf16 peak)") if "peak_gflops_bf16" in runs[0] else ""
    compiled = " Every workload ran torch.compile'd (`--compile`)." if b.get("compile") else ""
    head = "| workload | " + " | ".join(f"{r['threads']} thread(s) | of peak" for r in runs) + " | goal | faster |"
    lines = [f"Measured fp32 matmul peak ({chip}): **{peaks}**{bf16}. Each workload runs in its own process, "
             f"once per thread count; its fraction is of the peak with the same threads.{compiled}", "", head,
             "|---|" + "---|---|" * len(runs) + "---|---|"]
    for i, row in enumerate(runs[0]["rows"]):
        cells = []
        for r in runs:
            x = r["rows"][i]
            rate, unit = _throughput(x)
            cells.append(f"{rate:.0f} {unit} | {100 * x['ratio']:.0f} %")
        goal = f"≥ {100 * row['goal']:.0f} %" if row.get("goal") else ""
        name = row["name"] + (f" ({row['precision']})" if row.get("precision", "fp32") != "fp32" else "")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {goal} | {b['faster_threads'][row['name']]} thread(s) |")
    cores = b["hardware"]["cores"]
    slower = sorted(name for name, n in b["faster_threads"].items() if n != cores)
    lines += ["", f"Every command uses torch's default thread count, one per core ({cores} here): "
              + ("not measured in this run." if cores not in [r["threads"] for r in runs] else
                 "the faster column for every workload on this machine." if not slower else
                 f"**slower here for {', '.join(slower)}**; set `OMP_NUM_THREADS` to the faster count for those.")]
    return "\n".join(lines + breakdown_table(runs))


def breakdown_table(runs: list[dict[str, Any]]) -> list[str]:
    """Lines of a table: where each training step's time went, per thread count (none for benches without)."""
    rows = [(r["threads"], x) for r in runs for x in r["rows"] if "breakdown" in x]
    if not rows:
        return []
    lines = ["", "Where one training step's time goes (torch.profiler, ms per step and share; lvae.speed.breakdown):", "",
             "| workload | threads | " + " | ".join(CATEGORIES) + " | step |", "|---|---|" + "---|" * (len(CATEGORIES) + 1)]
    for threads, x in rows:
        d = x["breakdown"]
        cells = [f"{1000 * d[c]:.1f} ({100 * d[c] / d['total']:.0f} %)" for c in CATEGORIES]
        lines.append(f"| {x['name']} | {threads} | " + " | ".join(cells) + f" | {1000 * d['total']:.1f} |")
    return lines


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
    ap.add_argument("--compile", action="store_true", help="every workload torch.compile'd (lvae.compiling)")
    a = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    result = bench(a.steps, a.threads or sorted({1, cores}), a.compile)
    if a.save:
        with open(a.save, "w") as f:
            f.write(json.dumps(result, indent=1) + "\n")
    if a.json:
        print(json.dumps(result))
    else:
        print(bench_table(result))
        for r in result["runs"]:
            print(f"(fp32 matmul peak with {r['threads']} thread(s) re-measured after the workloads: {r['peak_gflops_after']:.1f} GFLOP/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
