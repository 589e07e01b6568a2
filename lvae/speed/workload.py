"""One benchmark workload, measured in a process of its own: the harness `make bench` and `make bench-compare` share.

    python -m lvae.speed.workload NAME [--steps 20] [--threads N] [--compile] [--breakdown]    # prints one JSON row

Why a file that runs by path: `make bench-compare` measures an older tree with this harness
(`run_by_path`), so both sides are timed by the same code and only the library differs. It therefore
imports nothing from `lvae.speed` at the top, and only the parts of `lvae` that older trees have too
(`Trainer.step`, `importance_log_weights`, `folded_for_inference`); `--compile` and `--breakdown`
need this tree.

A training workload is the real `Trainer.step` of the named config (forward, float32 loss, backward,
clipping, Adam, the moving average where the config keeps one; bf16 autocast where it asks for it) on a
synthetic batch; an IW workload is `importance_log_weights` of 4 images x K = 1000 on the folded
model, as `evaluate` scores. The first call is timed on its own (`first_call_s`: compilation, where
there is one, is paid there), then the best of `--steps` calls.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

# name -> (kind, config, goal as a fraction of the peak of the workload's precision; None: reported, no goal)
WORKLOADS: dict[str, tuple[str, str, float | None]] = {
    "train-seed": ("train", "seed", 0.5), "train-paper": ("train", "paper", 0.85),
    "train-paper-best": ("train", "paper-best", None), "iw-eval-paper": ("iw", "paper", 0.7),
    "iw-eval-seed": ("iw", "seed", None)}
IW_K, IW_IMAGES = 1000, 4


def count_flops(fn: Callable[[], Any]) -> int:
    """Matmul and convolution FLOPs of one call, forward and backward (element-wise work is not counted)."""
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


@contextmanager
def labelled_inputs() -> Iterator[None]:
    """Inside the block, the trainer's batch preparation (`model_inputs`: binarisation) runs under the
    profiler label "data" (lvae.speed.breakdown), wherever the trainer's module imported it."""
    from lvae.training import Trainer

    module = sys.modules[Trainer.__module__]
    plain = getattr(module, "model_inputs", None)
    if plain is None:
        yield
        return

    def labelled(*args, **kwargs):
        with torch.profiler.record_function("data"):
            return plain(*args, **kwargs)

    module.model_inputs = labelled
    try:
        yield
    finally:
        module.model_inputs = plain


def training_step(config_name: str, compile: bool = False, batches: int = 4) -> tuple[Callable[[], Any], int]:
    """(one `Trainer.step` of the named config at its batch size, images per step).

    Each call takes the next of `batches` batches of synthetic images, gathered from the split as
    `Trainer.fit` gathers them.
    """
    from lvae.config import named_config
    from lvae.data import synthetic_split
    from lvae.training import Trainer

    cfg = named_config(config_name)
    cfg.train.compile = compile
    b = cfg.train.batch_size
    split = synthetic_split(b * batches, seed=0)
    run_dir = tempfile.TemporaryDirectory(prefix="lvae-workload-")  # the step holds it; removed with the step
    trainer = Trainer(cfg, Path(run_dir.name), split, split, progress=False)
    order = torch.randperm(len(split.images), generator=torch.Generator().manual_seed(0))
    calls = itertools.count()

    def step(_run_dir=run_dir) -> None:
        i = next(calls) % batches
        with torch.profiler.record_function("data"):
            x = split.images[order[i * b : (i + 1) * b]]
        trainer.step(x, False)

    return step, b


def iw_pass(config_name: str, compile: bool = False) -> tuple[Callable[[], Any], int]:
    """(importance log-weights of IW_IMAGES images with IW_K draws each, as `evaluate` scores them; samples per call)."""
    from lvae.config import named_config
    from lvae.evaluation import importance_log_weights
    from lvae.fusion import folded_for_inference
    from lvae.model import build_model

    cfg = named_config(config_name)
    model = folded_for_inference(build_model(cfg.model_kind, cfg.model))
    x = torch.bernoulli(torch.rand(IW_IMAGES, *cfg.model.image_shape, generator=torch.Generator().manual_seed(0)))
    if compile:
        from lvae.compiling import compiled
        from lvae.evaluation import auto_chunk

        chunk = auto_chunk(model, x)  # on the plain model: the compiled one would be traced with the sizing hooks
        model = compiled(model, "the importance-weighted evaluation")
        return (lambda: importance_log_weights(model, x, IW_K, cfg.model.likelihood, chunk=chunk)), IW_K * IW_IMAGES
    return (lambda: importance_log_weights(model, x, IW_K, cfg.model.likelihood)), IW_K * IW_IMAGES


def precision(name: str) -> str:
    """The precision a workload's matmuls run in: bf16 where its config autocasts, else fp32."""
    from lvae.config import named_config

    kind, config, _ = WORKLOADS[name]
    return "bf16" if kind == "train" and named_config(config).train.amp == "bf16" else "fp32"


def measure(name: str, steps: int, compile: bool = False, breakdown: bool = False) -> dict[str, Any]:
    """One workload's JSON row: throughput, FLOP rate, first-call seconds, peak memory (and the step's breakdown)."""
    kind, config, _ = WORKLOADS[name]
    make = (lambda c: training_step(config, c)) if kind == "train" else (lambda c: iw_pass(config, c))
    flops = count_flops(make(False)[0])  # counted on the eager form: the same matmuls, and no tracing under the counter
    fn, items = make(compile)
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    seconds = time_it(fn, steps)
    row = {"name": name, "precision": precision(name), "compile": compile, "first_call_s": first,
           "throughput": items / seconds, "unit": "images/s" if kind == "train" else "importance samples/s",
           "time_s": seconds, "time_what": "per step" if kind == "train" else f"per {IW_IMAGES} images x K={IW_K}",
           "gflops": flops / seconds / 1e9, "flops_per_call": flops,
           "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if compile:
        from lvae.compiling import compile_seconds

        row["compile_s"] = compile_seconds()
    if kind == "train":
        row["epoch_s"] = 60000 / row["throughput"]
        row["time_what"] += f" (epoch ≈ {row['epoch_s']:.1f} s)"
        if breakdown:
            from lvae.speed.breakdown import step_breakdown

            step, _ = training_step(config, compile)
            with labelled_inputs():
                row["breakdown"] = step_breakdown(step, steps=max(3, min(steps, 10)))
    return row


def run_by_path(name: str, steps: int, threads: int, tree: Path | None = None, compile: bool = False,
                breakdown: bool = False, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`measure` in a fresh process (its own peak memory) whose `lvae` is `tree`'s (default: the working
    directory's): this file runs by path, with the tree first on the import path."""
    boot = "import runpy, sys; path = sys.argv[1]; sys.argv = sys.argv[1:]; runpy.run_path(path, run_name='__main__')"
    cmd = [sys.executable, "-c", boot, str(Path(__file__).resolve()), name, "--steps", str(steps), "--threads", str(threads),
           *(["--compile"] if compile else []), *(["--breakdown"] if breakdown else [])]
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode:
        raise SystemExit(f"error: workload {name} failed in {tree or Path.cwd()}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lvae.speed.workload", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(WORKLOADS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (this tree only)")
    ap.add_argument("--breakdown", action="store_true", help="add the step's profile by category (this tree only)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps(measure(a.name, a.steps, a.compile, a.breakdown)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
