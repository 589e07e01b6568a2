"""Results files: what a finished run leaves in results/ (NAME.json and NAME.pt), written and read here.

    python -m lvae.results save RUN_DIR NAME [--iw-samples K] [--command "..."]
        evaluates RUN_DIR and writes results/NAME.json (the evaluate JSON, training time,
        epochs, hardware, command) and results/NAME.pt (config + weights, <= 10 MB)

The docs that show these numbers are rendered from the files by `make results-table`
(`lvae.report.docs`); no number in them is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from lvae import checkpoint as ckpt
from lvae.config import RunConfig

RESULTS = Path("results")
HEADLINE = ("seed-lvae", "seed-vae")  # the paper's comparison lives in results/paper (lvae.experiments.paper, lvae.experiments.claims)
FASHION = ("fashion-seed-lvae", "fashion-paper-lvae")  # `make fashion`: the seed and paper recipes on Fashion-MNIST
MAX_BYTES = 10 * 2**20


# ----------------------------------------------------------------------------- writing


def training_summary(run_dir: Path) -> dict[str, Any]:
    """Epochs trained and seconds spent in training steps (the per-epoch test ELBO excluded)."""
    from lvae.training import read_jsonl

    rows = read_jsonl(Path(run_dir) / "epochs.jsonl")
    return {"epochs": len(rows), "train_seconds": sum(r["seconds"] for r in rows),
            "test_elbo_per_epoch": [r["elbo"] for r in rows], "seconds_per_epoch": [r["seconds"] for r in rows]}

def save_weights(cfg: RunConfig, model: torch.nn.Module, path: Path) -> None:
    """Config + weights; float32 if that fits in 10 MB, else float16 (cast back on load)."""
    sd = model.state_dict()
    dtype = "float32"
    if sum(t.numel() * t.element_size() for t in sd.values()) > MAX_BYTES * 0.95:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
        dtype = "float16"
    ckpt.save_atomic({"config": json.loads(json.dumps(cfg.to_dict())), "model": sd, "dtype": dtype}, path)

def load_model(path: Path):
    """(RunConfig, model in eval mode, float32) from a results/NAME.pt file."""
    from lvae.model import build_model

    sd = ckpt.load(path)
    try:
        cfg = RunConfig.from_dict(sd["config"])
        model = build_model(cfg.model_kind, cfg.model)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd["model"].items()})
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:  # files older than the digest can be damaged unseen
        raise ckpt.CheckpointError(f"{path}: not a weights file that this version of lvae reads ({type(e).__name__}: "
                                   f"{ckpt.first_line(e)})") from None
    return cfg, model.eval()

def save_result(run_dir: Path, name: str, iw_samples: int, command: str, chunk: int | None = None, limit: int | None = None,
                out_dir: Path = RESULTS, progress: bool = True, data_root: Path | None = None) -> dict[str, Any]:
    from lvae.evaluation import evaluate_run

    cfg, model = ckpt.load_run(run_dir)
    result = evaluate_run(run_dir, iw_samples=iw_samples, chunk=chunk, limit=limit, progress=progress, data_root=data_root)
    result.update(name=name, command=command, training=training_summary(run_dir), config_dict=cfg.to_dict())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    save_weights(cfg, model, out_dir / f"{name}.pt")
    return result


# ----------------------------------------------------------------------------- reading


def trained_epochs(r: dict[str, Any]) -> tuple[int, int]:
    """(epochs trained, epochs its config asked for): fewer trained than planned is a partial run."""
    trained = r["training"]["epochs"]
    return trained, r.get("config_dict", {}).get("train", {}).get("epochs", trained)

def load_rows(results_dir: Path, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The saved results among `names`, in that order."""
    return [json.loads((results_dir / f"{n}.json").read_text()) for n in names if (results_dir / f"{n}.json").exists()]


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
