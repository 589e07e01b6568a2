"""Test NLL against training time and epochs, from checkpoints copied during a run.

    .venv/bin/python scripts/nll_curve.py RUN_DIR SNAPSHOT_DIR NAME [--iw-samples 100] [--limit 1000]

Each snapshot (a copy of RUN_DIR/checkpoint.pt taken while the run trained) is scored with
the importance-weighted NLL on the first `--limit` test images; its training time is the
sum of the epoch times logged up to the snapshot's iteration. Writes results/NAME-curve.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lvae import checkpoint as ckpt
from lvae.config import RunConfig
from lvae.data import load_split
from lvae.evaluation import hardware, iw_log_likelihood
from lvae.model import build_model
from lvae.training import evaluation_inputs, read_jsonl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("snapshots", type=Path)
    ap.add_argument("name")
    ap.add_argument("--iw-samples", type=int, default=100)
    ap.add_argument("--limit", type=int, default=1000)
    a = ap.parse_args()
    cfg = RunConfig.load(a.run_dir / "config.json")
    epochs = read_jsonl(a.run_dir / "epochs.jsonl")
    x = evaluation_inputs(load_split(cfg.train.dataset, "test").head(a.limit), cfg.model.likelihood)
    paths = sorted(a.snapshots.glob("*.pt")) + [a.run_dir / ckpt.LATEST]
    points = []
    for path in paths:
        sd = ckpt.load(path)
        model = build_model(cfg.model_kind, cfg.model)
        model.load_state_dict(sd["model"])
        state = sd["state"]
        epoch = state["epoch"] + state["batch_in_epoch"] / max(1, len(range(0, 60000 // cfg.train.batch_size)))
        seconds = sum(r["seconds"] for r in epochs if r["epoch"] < state["epoch"])
        torch.manual_seed(0)
        iw = iw_log_likelihood(model.eval(), x, a.iw_samples, cfg.model.likelihood, cfg.model.output_variance)
        points.append({"iteration": state["iteration"], "epoch": epoch, "train_seconds": seconds, "nll": iw.nll, "nll_stderr": iw.stderr})
        print(f"{path.name}: epoch {epoch:.1f}, {seconds / 60:.1f} min, NLL {iw.nll:.2f} ± {iw.stderr:.2f}", flush=True)
    out = Path("results") / f"{a.name}-curve.json"
    out.write_text(json.dumps({"run": str(a.run_dir), "iw_samples": a.iw_samples, "images": len(x), "hardware": hardware(),
                               "points": points}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
