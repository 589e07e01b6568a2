"""Ablations on the `paper` LVAE at a short, equal budget: each change against the same baseline.

    .venv/bin/python scripts/paper_ablations.py [--epochs 10] [--iw-samples 100] [--limit 2000] [--only NAME ...]

Each row trains for `--epochs` epochs into runs/paper-ablations/<name> and is scored by the
importance-weighted NLL on the first `--limit` test images (fixed binarization). A change is
"kept" when it lowers the NLL by more than twice the standard error of the *paired*
per-image difference to the baseline (same images, so image-to-image spread cancels),
"dropped" when it raises it by as much, else "no clear effect". Rows go to
results/paper-ablations.json, one at a time.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from lvae.config import LayerSpec, paper_config, with_overrides
from lvae.data import load_split
from lvae.evaluation import active_units, hardware, iw_log_likelihood
from lvae.training import Trainer, evaluation_inputs, test_elbo

WIDE = [LayerSpec("dense", (w, w), latent=z) for w, z in zip((1024, 512, 256, 128, 64), (64, 32, 16, 8, 4))]
# name -> (what it changes, overrides as dotted config paths)
ROWS: dict[str, tuple[str, dict]] = {
    "baseline": ("the paper config as shipped: constant lr 2e-3, warm-up over 20 epochs", {}),
    "cosine": ("cosine lr schedule 2e-3 -> 0", {"train.lr_schedule": "cosine"}),
    "warmup-5": ("warm-up over 5 epochs instead of 20", {"objective.beta.steps": 5}),
    "free-bits": ("free bits: 0.5 nats per layer", {"objective.free_bits": 0.5}),
    "wide": ("layers twice as wide (1024 ... 64)", {"model.layers": WIDE}),
}


def make_config(overrides: dict, epochs: int):
    cfg = paper_config()
    cfg.train.epochs = epochs
    return with_overrides(cfg, overrides)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--iw-samples", type=int, default=100)
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--only", nargs="*", choices=sorted(ROWS))
    ap.add_argument("--out", type=Path, default=Path("results/paper-ablations.json"))
    a = ap.parse_args()
    done = json.loads(a.out.read_text()) if a.out.exists() else {"rows": []}
    rows = {r["name"]: r for r in done["rows"]}
    per_image: dict[str, torch.Tensor] = {}
    train, test = load_split("mnist", "train"), load_split("mnist", "test")
    x = evaluation_inputs(test.head(a.limit), "bernoulli")
    for name in a.only or list(ROWS):
        what, overrides = ROWS[name]
        cfg = make_config(overrides, a.epochs)
        run_dir = Path("runs/paper-ablations") / name
        t0 = time.perf_counter()
        trainer = Trainer(cfg, run_dir, train, test, progress=False)
        trainer.fit()
        seconds = time.perf_counter() - t0
        model = trainer.model.eval()
        torch.manual_seed(0)
        iw = iw_log_likelihood(model, x, a.iw_samples, "bernoulli")
        per_image[name] = iw.per_image
        torch.save(iw.per_image, run_dir / "per_image_log_px.pt")
        elbo = test_elbo(model, x, "bernoulli")
        active, units, _ = active_units(model, x)
        rows[name] = {"name": name, "what": what, "overrides": {k: str(v) for k, v in overrides.items()},
                      "training": {"epochs": a.epochs, "train_seconds": seconds}, "elbo": elbo["elbo"], "kl_per_layer": elbo["kl"],
                      "nll": iw.nll, "nll_stderr": iw.stderr, "iw_samples": a.iw_samples, "images": len(x),
                      "active_units": active, "latent_units": units}
        base_file = Path("runs/paper-ablations/baseline/per_image_log_px.pt")
        if name != "baseline" and base_file.exists():
            diff = per_image[name] - torch.load(base_file)  # log p(x) gain per image
            se = diff.std().item() / math.sqrt(len(diff))
            gain = diff.mean().item()
            verdict = "kept" if gain > 2 * se else "dropped" if gain < -2 * se else "no clear effect"
            rows[name].update(nll_change=-gain, nll_change_stderr=se, verdict=f"{verdict} ({-gain:+.2f} ± {se:.2f} nats)")
        r = rows[name]
        print(f"{name:10s} ELBO {r['elbo']:.2f}  NLL {r['nll']:.2f} ± {r['nll_stderr']:.2f}  active {active}  {r.get('verdict', '')}  ({seconds:.0f} s)", flush=True)
        a.out.parent.mkdir(exist_ok=True)
        a.out.write_text(json.dumps({"hardware": hardware(), "note": (
            f"{a.epochs} epochs each (a short, equal budget), NLL with K = {a.iw_samples} on the first {a.limit} test images; "
            "a change is kept if it lowers the NLL by more than 2 standard errors of the paired per-image difference "
            "to `baseline`. Rows are not a substitute for the long runs above: they rank changes at a small budget."),
            "rows": list(rows.values())}, indent=1) + "\n")


if __name__ == "__main__":
    main()
