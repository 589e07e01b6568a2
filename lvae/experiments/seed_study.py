"""The seed's "mode collapse", measured: train variants of the `seed` config and judge
their prior samples (class histogram, KL to uniform, FID_MNIST) and likelihoods.

    .venv/bin/python lvae/experiments/seed_study.py [--only NAME ...] [--iw-samples 100] [--limit 1000]

Every variant trains for the seed's budget (3 epochs) into runs/seed-study/<name>; rows are
appended to results/seed-study.json (a variant already there is skipped unless --redo), so the
study can grow one variant at a time. Likelihoods of variants with different likelihood
models are not comparable (Gaussian densities vs Bernoulli probabilities); the sample
metrics are.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lvae import flags
from lvae.config import seed_config, with_overrides
from lvae.data import load_split
from lvae.classifier import features, load_classifier
from lvae.evaluation import evaluate_model, hardware, sample_quality
from lvae.fid import frechet_distance
from lvae.runfiles import read_json
from lvae.errors import CheckpointError
from lvae.training import Trainer, evaluation_inputs

# name -> (what it tests, overrides as dotted config paths)
VARIANTS: dict[str, tuple[str, dict]] = {
    "lvae": ("the seed config as shipped (paper KL, beta -> 0.5, MSE)", {}),
    "vae": ("vanilla VAE, same trunks", {"model_kind": "vae"}),
    "lvae-klseed": ("the author's KL variant", {"objective.kl_mode": "seed"}),
    "vae-klseed": ("vanilla VAE, the author's KL variant (no inner latent: same as vae)", {"model_kind": "vae", "objective.kl_mode": "seed"}),
    "lvae-beta1": ("beta -> 1: the true ELBO at the end", {"objective.beta.end": 1.0}),
    "lvae-bernoulli": ("Bernoulli likelihood on the grey levels (cross-entropy, not MSE)", {"model.likelihood": "bernoulli", "objective.beta.end": 1.0}),
    "vae-bernoulli": ("vanilla VAE, Bernoulli likelihood", {"model_kind": "vae", "model.likelihood": "bernoulli", "objective.beta.end": 1.0}),
    "lvae-bernoulli-fb": ("Bernoulli + free bits 2 nats/layer", {"model.likelihood": "bernoulli", "objective.beta.end": 1.0, "objective.free_bits": 2.0}),
    "lvae-10ep": ("10 epochs instead of 3", {"train.epochs": 10}),
    "lvae-beta1-10ep": ("beta -> 1 and 10 epochs", {"objective.beta.end": 1.0, "train.epochs": 10}),
    "lvae-bernoulli-10ep": ("Bernoulli, 10 epochs", {"model.likelihood": "bernoulli", "objective.beta.end": 1.0, "train.epochs": 10}),
}
TEMPERATURES = (0.8,)  # T = 1 comes with evaluate_model


def make_config(name: str, overrides: dict):
    cfg = seed_config()
    cfg.name = f"seed-study-{name}"
    return with_overrides(cfg, overrides)


def run_variant(name: str, iw_samples: int, limit: int, out_root: Path) -> dict:
    what, overrides = VARIANTS[name]
    cfg = make_config(name, overrides)
    train, test = load_split("mnist", "train"), load_split("mnist", "test")
    t0 = time.perf_counter()
    trainer = Trainer(cfg, out_root / name, train, test, progress=False)
    trainer.fit()
    train_seconds = time.perf_counter() - t0
    model = trainer.model.eval()
    sub = test.head(limit)
    row = evaluate_model(model, evaluation_inputs(sub, cfg.model.likelihood), test.images, cfg.model.likelihood,
                         cfg.model.output_variance, iw_samples=iw_samples, prior_samples=10000)
    by_t = {"1.0": {k: row[k] for k in ("class_histogram", "class_kl_to_uniform", "fid_mnist")}}
    for t in TEMPERATURES:
        torch.manual_seed(0)
        by_t[str(t)] = sample_quality(model, test.images, 10000, temperature=t)
    return {"name": name, "what": what, "overrides": overrides, "likelihood": cfg.model.likelihood,
            "model_kind": cfg.model_kind, "kl_mode": cfg.objective.kl_mode, "epochs": cfg.train.epochs,
            "train_seconds": train_seconds, **row, "by_temperature": by_t}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lvae.experiments.seed_study", description=__doc__)
    ap.add_argument("--only", nargs="*", choices=sorted(VARIANTS))
    ap.add_argument("--iw-samples", type=flags.integer(1, 1_000_000), default=100)
    ap.add_argument("--limit", type=flags.integer(1, 10_000), default=1000, help="test images for the likelihoods (samples use all 10,000)")
    ap.add_argument("--redo", action="store_true")
    ap.add_argument("--out", type=flags.output_file(".json"), default=Path("results/seed-study.json"))
    a = ap.parse_args(argv)
    try:
        done = read_json(a.out, "a seed study lvae wrote") if a.out.exists() else {"rows": []}
        rows = {r["name"]: r for r in done["rows"]}
    except (CheckpointError, KeyError, TypeError) as e:
        raise SystemExit(f"error: {e if isinstance(e, CheckpointError) else f'{a.out}: not a seed study lvae wrote ({e!r})'}; "
                         "restore it, or move it away to start again") from None
    if "fid_train_vs_test" not in done:  # the floor: real training digits against the test digits
        judge = load_classifier()
        done["fid_train_vs_test"] = frechet_distance(features(judge, load_split("mnist", "train").images[:10000]),
                                                     features(judge, load_split("mnist", "test").images))
    for name in a.only or list(VARIANTS):
        if name in rows and not a.redo:
            continue
        rows[name] = run_variant(name, a.iw_samples, a.limit, Path("runs/seed-study"))
        r = rows[name]
        print(f"{name:22s} KL-uniform {r['class_kl_to_uniform']:.4f} (T=0.8: {r['by_temperature']['0.8']['class_kl_to_uniform']:.4f})  "
              f"FID {r['fid_mnist']:.1f}  NLL {r['nll']:.1f}  KL {[round(k, 1) for k in r['kl_per_layer']]}  "
              f"hist {[round(h, 3) for h in r['class_histogram']]}", flush=True)
        a.out.parent.mkdir(exist_ok=True)
        a.out.write_text(json.dumps({"hardware": hardware(), "iw_samples": a.iw_samples, "likelihood_images": a.limit,
                                     "fid_train_vs_test": done["fid_train_vs_test"],
                                     "rows": list(rows.values())}, indent=1) + "\n")


if __name__ == "__main__":
    main()
