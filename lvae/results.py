"""Results files: what a finished run leaves in results/ (NAME.json and NAME.pt), written and read here.

    python -m lvae.results save RUN_DIR NAME [--iw-samples K] [--command "..."]
        evaluates RUN_DIR and writes results/NAME.json (the evaluate JSON, training time,
        epochs, hardware, command) and results/NAME.pt (config + weights, <= 10 MiB: lvae.weights)

The docs that show these numbers are rendered from the files by `make results-table`
(`lvae.report.docs`); no number in them is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lvae import checkpoint as ckpt
from lvae.runfiles import read_json
from lvae.weights import MAX_BYTES, load_model, save_weights  # noqa: F401  (read through here by figures, runs, paper)

RESULTS = Path("results")
HEADLINE = ("seed-lvae", "seed-vae")  # the paper's comparison lives in results/paper (lvae.experiments.paper, lvae.experiments.claims)
FASHION = ("fashion-seed-lvae", "fashion-paper-lvae")  # `make fashion`: the seed and paper recipes on Fashion-MNIST


# ----------------------------------------------------------------------------- writing


def training_summary(run_dir: Path) -> dict[str, Any]:
    """Epochs trained and seconds spent in training steps (the per-epoch test ELBO excluded; None where it was skipped)."""
    from lvae.training import read_jsonl

    rows = read_jsonl(Path(run_dir) / "epochs.jsonl")
    return {"epochs": len(rows), "train_seconds": sum(r["seconds"] for r in rows),
            "test_elbo_per_epoch": [r.get("elbo") for r in rows], "seconds_per_epoch": [r["seconds"] for r in rows]}


def save_result(run_dir: Path, name: str, iw_samples: int, command: str, chunk: int | None = None, limit: int | None = None,
                out_dir: Path = RESULTS, progress: bool = True, data_root: Path | None = None,
                evaluation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write results/NAME.json and NAME.pt for a finished run; `evaluation`: its `evaluate` result when the
    caller has one already (a cached one), else it is made here."""
    from lvae.evaluation import evaluate_run

    cfg, model = ckpt.load_run(run_dir)
    result = dict(evaluation) if evaluation is not None else \
        evaluate_run(run_dir, iw_samples=iw_samples, chunk=chunk, limit=limit, progress=progress, data_root=data_root)
    result.update(name=name, command=command, training=training_summary(run_dir), config_dict=cfg.to_dict())
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt.write_atomic(out_dir / f"{name}.json", lambda f: f.write((json.dumps(result, indent=1) + "\n").encode()))
    save_weights(cfg, model, out_dir / f"{name}.pt")
    return result


# ----------------------------------------------------------------------------- reading


def trained_epochs(r: dict[str, Any]) -> tuple[int, int]:
    """(epochs trained, epochs its config asked for): fewer trained than planned is a partial run."""
    trained = r["training"]["epochs"]
    return trained, r.get("config_dict", {}).get("train", {}).get("epochs", trained)

RESULT = "a result lvae wrote (python -m lvae.results save writes one)"


def load_rows(results_dir: Path, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The saved results among `names`, in that order; a file that is no JSON object is named."""
    return [read_json(path, RESULT) for path in (results_dir / f"{n}.json" for n in names) if path.exists()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lvae.results", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("run_dir", type=Path)
    s.add_argument("name")
    s.add_argument("--iw-samples", type=int, default=1000)
    s.add_argument("--chunk", type=int)
    s.add_argument("--limit", type=int)
    s.add_argument("--command", required=True, help="the training command, recorded in the JSON")
    a = ap.parse_args(argv)
    try:
        r = save_result(a.run_dir, a.name, a.iw_samples, a.command, a.chunk, a.limit)
        print(f"wrote {RESULTS / a.name}.json and .pt: NLL {r['nll']:.2f} ± {r['nll_stderr']:.2f} (K={r['iw_samples']})")
    except ckpt.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
