"""`make bench` judges each workload against the peak of its precision, names the chip, shows the step's
breakdown, and `make bench-compare` marks issue 30's four ratios."""

from __future__ import annotations

import pytest
import torch

from lvae.speed import bench, bench_compare, workload
from lvae.speed.breakdown import CATEGORIES


def test_a_bf16_workload_is_judged_against_the_bf16_peak():
    peak = {"fp32": 100.0, "bf16": 800.0}
    fp32 = bench.judged({"name": "train-paper", "precision": "fp32", "gflops": 60.0}, peak, 0.85)
    bf16 = bench.judged({"name": "train-paper-best", "precision": "bf16", "gflops": 200.0}, peak, None)
    assert fp32["ratio"] == pytest.approx(0.6) and fp32["met"] is False
    assert bf16["ratio"] == pytest.approx(0.25) and bf16["met"] is None


def test_the_bf16_peak_is_measured_in_bf16(monkeypatch):
    seen = []
    real = torch.mm
    monkeypatch.setattr(bench.torch, "mm", lambda a, b: seen.append(a.dtype) or real(a, b))
    assert bench.matmul_peak(n=64, repeats=2, dtype=torch.bfloat16) > 0
    assert seen == [torch.bfloat16] * 3


def test_workloads_know_their_precision():
    assert workload.precision("train-paper-best") == "bf16"  # the paper-best recipe autocasts its forward pass
    assert workload.precision("train-paper") == "fp32" and workload.precision("iw-eval-paper") == "fp32"


def made_up_bench() -> dict:
    split = dict.fromkeys(CATEGORIES, 0.0) | {"matmul": 0.03, "element-wise": 0.05, "other": 0.02, "total": 0.1}
    rows = [{"name": "train-paper", "precision": "fp32", "throughput": 5000.0, "unit": "images/s", "ratio": 0.5, "goal": 0.85,
             "breakdown": split},
            {"name": "train-paper-best", "precision": "bf16", "throughput": 2000.0, "unit": "images/s", "ratio": 0.1, "goal": None}]
    run = {"threads": 1, "peak_gflops": 90.0, "peak_gflops_bf16": 630.0, "peak_gflops_after": 90.0, "rows": rows}
    return {"hardware": {"cpu": "x", "cores": 1}, "cpu": {"model": "Intel Xeon", "flags": {"avx512_bf16": True, "amx_bf16": True}},
            "faster_threads": {"train-paper": 1, "train-paper-best": 1}, "runs": [run]}


def test_the_bench_table_names_the_chip_both_peaks_and_the_step_breakdown():
    table = bench.bench_table(made_up_bench())
    assert "Measured fp32 matmul peak (Intel Xeon (avx512_bf16, amx_bf16)): **90.0 GFLOP/s with 1 thread(s)**" in table
    assert "bf16 matmul peak: **630.0 GFLOP/s with 1 thread(s)**" in table
    assert "| train-paper-best (bf16) | 2000 images/s | 10 % |" in table
    row = next(line for line in table.splitlines() if line.startswith("| train-paper | 1 |"))
    assert row == "| train-paper | 1 | 30.0 (30 %) | 50.0 (50 %) | 0.0 (0 %) | 0.0 (0 %) | 20.0 (20 %) | 100.0 |"


def test_bench_compare_marks_the_four_targets():
    assert bench_compare.target("train-paper", 1) == 1.4 and bench_compare.target("train-paper", 2) is None
    assert bench_compare.target("train-paper-best", 2) == 2.0 and bench_compare.target(bench_compare.TRAIN_COMMAND, 2) == 1.3
    rows = [{"workload": "iw-eval-paper", "threads": 2, "before": 100.0, "after": 160.0, "speedup": 1.6, "target": 1.5,
             "unit": "importance samples/s"},
            {"workload": "train-paper", "threads": 1, "before": 100.0, "after": 120.0, "speedup": 1.2, "target": 1.4, "unit": "images/s"}]
    b = {"before": "abc", "after": "def", "compile": True, "rounds": 2, "hardware": {"cpu": "x", "cores": 2},
         "cpu": {"model": "AMD EPYC", "flags": {}}, "rows": rows}
    table = bench_compare.table(b)
    assert "AMD EPYC (no bf16 units), 2 cores" in table and "torch.compile'd" in table
    assert "| iw-eval-paper | 2 | 100 | 160 importance samples/s | **1.60×** | ≥ 1.5× (met) |" in table
    assert "| train-paper | 1 | 100 | 120 images/s | **1.20×** | ≥ 1.4× (**missed**) |" in table


def test_the_whole_command_is_timed_start_to_exit(tiny_data, monkeypatch):
    """The paper command on 256 images, one epoch: a rate, and one that counts the process's start-up (below
    what its own epochs.jsonl would say, which leaves it out)."""
    from pathlib import Path

    rate = bench_compare.command_rate(Path.cwd(), 1, tiny_data, epochs=1, limit=256)
    assert 0 < rate < 256 / 0.5  # 256 images cannot take under half a second with python's and torch's start-up


def test_the_compiled_command_compiles_into_an_empty_cache_unless_told_the_cache_is_warm(monkeypatch, tmp_path):
    import os
    import subprocess

    calls = []
    monkeypatch.setattr(bench_compare.subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw["env"])) or subprocess.CompletedProcess(cmd, 0))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert bench_compare.command_rate(tmp_path, 1, tmp_path, 1, 100, compile=True) > 0
    assert bench_compare.command_rate(tmp_path, 1, tmp_path, 1, 100, compile=True, warm=True) > 0
    (cold_cmd, cold_env), (warm_cmd, warm_env) = calls
    assert "--compile" in cold_cmd and "--compile" in warm_cmd
    assert cold_env["TORCHINDUCTOR_CACHE_DIR"].endswith("/kernels") and not os.path.exists(cold_env["TORCHINDUCTOR_CACHE_DIR"])
    assert "TORCHINDUCTOR_CACHE_DIR" not in warm_env  # lvae.compiling then picks the user's cache
