"""Weights files (lvae.weights): under 10 MiB for the largest shipped config, and scored like the run they came from."""

import json

import pytest
import torch

from lvae.cli import main
from lvae.config import paper_best_config
from lvae.evaluation import evaluate_run
from lvae.model import build_model
from lvae.weights import FORMATS, MAX_BYTES, encode, load_model, load_trained, save_weights
from test_training import assert_png_shows


@pytest.mark.slow
def test_paper_best_weights_fit_in_10_mib(tmp_path):
    torch.manual_seed(0)
    cfg = paper_best_config()
    model = build_model(cfg.model_kind, cfg.model)
    assert len(encode(cfg, model, "float16")) > MAX_BYTES  # 5.5 M weights: float16 alone is 10.5 MiB
    assert save_weights(cfg, model, tmp_path / "paper-best.pt") == "float16+xz"
    assert (tmp_path / "paper-best.pt").stat().st_size < MAX_BYTES
    cfg2, model2 = load_model(tmp_path / "paper-best.pt")
    assert cfg2.to_dict() == cfg.to_dict()
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        expected = a.half().float() if a.is_floating_point() else a
        assert b.dtype == a.dtype and torch.equal(b, expected), name  # float16 rounding, nothing else lost


@pytest.mark.slow
def test_a_weights_file_scores_and_samples_like_its_run(tmp_path, tiny_data, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", "paper", "--depth", "3", "--epochs", "2", "--batch-size", "64", "--data-root", str(tiny_data),
                 "--out", str(run), "--no-progress"]) == 0
    cfg, model = load_trained(run)
    score = dict(iw_samples=50, limit=16, prior_samples=0, seed=0, data_root=tiny_data, progress=False)
    reference = evaluate_run(run, **score)
    for fmt in FORMATS:
        path = tmp_path / f"{fmt}.pt"
        assert save_weights(cfg, model, path, formats=(fmt,)) == fmt
        got = evaluate_run(path, **score)
        assert got["run"] == str(path) and got["images"] == 16 and got["iw_samples"] == 50
        # float16 rounds each weight to a relative 2^-11: on this barely trained model (about 230 nats an image)
        # that moves the NLL by about 1e-4 of itself; a trained model (80-90 nats) stays within 0.02
        assert abs(got["nll"] - reference["nll"]) < max(0.02, 2e-4 * reference["nll"]), fmt
        if fmt == "float32":
            assert got["nll"] == reference["nll"] and got["per_image_log_px"] == reference["per_image_log_px"]  # the same model

    capsys.readouterr()
    pt = tmp_path / "float16+xz.pt"
    assert main(["evaluate", str(pt), "--iw-samples", "50", "--limit", "16", "--prior-samples", "0", "--data-root", str(tiny_data),
                 "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["nll"] == evaluate_run(pt, **score)["nll"]
    assert main(["sample", str(pt), "--n", "16", "--seed", "2"]) == 0
    assert_png_shows(tmp_path / "float16+xz-samples.png", load_model(pt)[1], n=16, seed=2)
    assert main(["evaluate", str(pt), "--epoch", "1"]) == 2
    assert "is one weights file" in capsys.readouterr().err


def test_a_weights_file_too_large_for_every_format_is_refused(tmp_path):
    cfg = paper_best_config()
    with pytest.raises(Exception, match="over the 1.0 MiB a weights file may take"):
        save_weights(cfg, build_model(cfg.model_kind, cfg.model), tmp_path / "w.pt", max_bytes=2**20, formats=("float16",))
    assert not (tmp_path / "w.pt").exists()
