"""Every committed weights file reproduces the likelihood its JSON reports: the weights in the repo can be checked."""

import json
from pathlib import Path

import pytest
import torch

from lvae.data import default_root, fetch_command, is_cached, load_split
from lvae.evaluation import auto_chunk, iw_log_likelihood
from lvae.training import evaluation_inputs, split_elbo
from lvae.weights import load_trained

RESULTS = Path(__file__).resolve().parents[1] / "results"
IMAGES = 2000
TOLERANCE = 0.02  # nats (issue 17); the same draws leave only the weights' storage and float32 rounding
LEGACY_BUDGET = 4 * 2**20  # bytes: the activation budget that set the rows per pass before JSONs recorded `iw_chunk`


def scored_weights() -> list[Path]:
    """Committed MNIST weights whose JSON holds each test image's log p(x) (the sweep's and the long pair's, paper-best)."""
    found = []
    for pt in sorted(RESULTS.rglob("*.pt")):
        js = pt.with_suffix(".json")
        if js.is_file():
            r = json.loads(js.read_text())
            if "per_image_log_px" in r and r.get("dataset", "mnist") == "mnist" and r.get("split", "test") == "test":
                found.append(pt)
    return found


def test_the_long_pair_and_paper_best_are_among_them():
    names = {p.relative_to(RESULTS).as_posix() for p in scored_weights()}
    assert {"paper/long-lvae-bn-wu-s0.pt", "paper/long-vae-bn-wu-s0.pt"} <= names


@pytest.mark.slow  # K = 1000 on 2000 images, per weights file
@pytest.mark.parametrize("weights", scored_weights(), ids=lambda p: p.relative_to(RESULTS).as_posix())
def test_committed_weights_reproduce_their_json_on_the_first_2000_test_images(weights):
    """The same K and seed as `evaluate` (lvae.evaluation.evaluate_model): seed, the ELBO pass over the whole split
    (so the random stream reaches the IW pass where it did), then the IW pass over the first 2000 images only."""
    root = default_root()
    if not is_cached("mnist", root):
        pytest.skip(f"the MNIST cache is not in {root} (set LVAE_DATA, or fetch it: {fetch_command('mnist', root)})")
    r = json.loads(weights.with_suffix(".json").read_text())
    r = r.get("check_score", r)  # paper-best: its last stage's K = 1000 score of the same weights, not the K = 5000 headline
    cfg, model = load_trained(weights)
    x = evaluation_inputs(load_split("mnist", "test", root), cfg.model.likelihood)
    torch.manual_seed(0)
    split_elbo(model, x, cfg.model.likelihood, cfg.model.output_variance)
    # iw_log_likelihood's own probe for its rows per pass draws one row of noise: run it to keep the stream in step,
    # then score with the rows per pass the JSON was scored with (the 4 MB budget's, before JSONs recorded it)
    probe = auto_chunk(model, x[:1], budget_bytes=LEGACY_BUDGET)
    chunk = r.get("iw_chunk") or probe
    k = r["iw_samples"]
    per_pass = max(1, chunk // k) if k < chunk else 1  # images per IW pass: a cut inside a pass would redraw its noise
    n = IMAGES - IMAGES % per_pass
    iw = iw_log_likelihood(model, x[:n], k, cfg.model.likelihood, cfg.model.output_variance, chunk=chunk)
    expected = torch.tensor(r["per_image_log_px"][:n], dtype=torch.float64)
    got_nll, expected_nll = -iw.per_image.mean().item(), -expected.mean().item()
    assert abs(got_nll - expected_nll) <= TOLERANCE, f"{weights.name}: {got_nll:.4f} against the JSON's {expected_nll:.4f} on {n} images"
    assert (iw.per_image - expected).abs().max() < 0.05  # image by image too: the same draws, not just the same mean
