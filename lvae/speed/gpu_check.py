"""`make gpu-check`: the `paper-best` ladder trained and scored on one GPU, in one short command.

    python -m lvae.speed.gpu_check [--device cuda] [--config paper-best] [--epochs N] [--iw-samples 5000]
                             [--out results/gpu-check.json] [--test-limit N] [-- TRAIN FLAGS ...]

It trains `python -m lvae train --config paper-best` (or `--config`; plus any TRAIN FLAGS
after `--`, e.g. `-- --amp bf16`) on the device, with the training images resident on it
and binarized there, then computes the importance-weighted NLL on the test set with K =
5000, and prints and writes: training images/s, training minutes, the NLL with its
standard error, the evaluation's importance samples/s and the hardware record. It is
written to be run when a GPU is lent for a few minutes: everything it needs is in this
repository and the data cache; on a CPU, tiny settings make it a smoke test
(`--device cpu --epochs 1 -- --limit 512`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lvae.config import NAMED_CONFIGS, ConfigError
from lvae.data import DataError, default_root, load_split
from lvae.evaluation import hardware, iw_log_likelihood
from lvae.speed.speed_options import synchronize
from lvae.training import Trainer, evaluation_inputs, read_jsonl


def check(train_flags: list[str], device: str, epochs: int | None, iw_samples: int, test_limit: int | None,
          data_root: Path | None, run_dir: Path, config: str = "paper-best") -> dict[str, Any]:
    """Train, evaluate, and say how fast each part ran."""
    from lvae.cli import build_parser, config_from_args

    argv = ["train", "--config", config, "--device", device, *(["--epochs", str(epochs)] if epochs else []), *train_flags]
    cfg = config_from_args(build_parser().parse_args(argv))
    root = data_root or default_root()
    train, test = load_split(cfg.train.dataset, "train", root), load_split(cfg.train.dataset, "test", root).head(test_limit)
    trainer = Trainer(cfg, run_dir, train, test, progress=False, data_root=root)
    t0 = time.perf_counter()
    trainer.fit()
    synchronize(trainer.device)
    wall = time.perf_counter() - t0
    step_seconds = sum(r["seconds"] for r in read_jsonl(run_dir / "epochs.jsonl"))  # per-epoch test ELBO excluded
    images = cfg.train.epochs * trainer.iters_per_epoch * cfg.train.batch_size

    x = evaluation_inputs(test, cfg.model.likelihood)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    iw = iw_log_likelihood(trainer.model, x, iw_samples, cfg.model.likelihood, cfg.model.output_variance)
    synchronize(trainer.device)
    eval_seconds = time.perf_counter() - t0
    return {"command": "python -m lvae " + " ".join(argv), "epochs": cfg.train.epochs, "train_images_per_s": images / step_seconds,
            "train_minutes": wall / 60, "nll": iw.nll, "nll_stderr": iw.stderr, "iw_samples": iw_samples, "test_images": len(x),
            "eval_minutes": eval_seconds / 60, "iw_samples_per_s": iw_samples * len(x) / eval_seconds, "hardware": hardware()}


def report(r: dict[str, Any]) -> str:
    return (f"{r['command']}\n"
            f"  training    {r['train_images_per_s']:,.0f} images/s, {r['train_minutes']:.1f} min for {r['epochs']} epochs\n"
            f"  NLL         {r['nll']:.2f} ± {r['nll_stderr']:.2f} nats (K={r['iw_samples']}, {r['test_images']} test images)\n"
            f"  evaluation  {r['iw_samples_per_s']:,.0f} importance samples/s, {r['eval_minutes']:.1f} min\n"
            f"  on          {r['hardware']['cuda'] or r['hardware']['cpu']}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(prog="python -m lvae.speed.gpu_check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--config", default="paper-best", choices=sorted(NAMED_CONFIGS), help="named configuration (default paper-best)")
    ap.add_argument("--epochs", type=int, help="default: the config's (paper-best: 160)")
    ap.add_argument("--iw-samples", type=int, default=5000)
    ap.add_argument("--test-limit", type=int, help="score the first N test images only (smoke tests)")
    ap.add_argument("--data-root", type=Path)
    ap.add_argument("--out", type=Path, default=Path("results/gpu-check.json"))
    a = ap.parse_args(own)
    try:
        with tempfile.TemporaryDirectory(prefix="lvae-gpu-check-") as tmp:
            result = check(train_flags, a.device, a.epochs, a.iw_samples, a.test_limit, a.data_root, Path(tmp) / "run", a.config)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(report(result))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
