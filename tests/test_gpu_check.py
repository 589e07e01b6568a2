"""`make gpu-check` is ready for a lent GPU: the same command runs end to end on the CPU at a tiny budget."""

import json

import pytest
import torch

from lvae.speed import gpu_check


@pytest.mark.slow
def test_gpu_check_trains_scores_and_reports_on_a_tiny_budget(tiny_data, tmp_path, capsys):
    out = tmp_path / "gpu-check.json"
    rc = gpu_check.main(["--device", "cpu", "--epochs", "2", "--iw-samples", "8", "--test-limit", "32",
                         "--data-root", str(tiny_data), "--out", str(out), "--", "--limit", "256", "--batch-size", "64"])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["command"].startswith("python -m lvae train --config paper-best --device cpu --epochs 2 --limit 256 --batch-size 64")
    assert r["epochs"] == 2 and r["iw_samples"] == 8 and r["test_images"] == 32
    assert r["train_images_per_s"] > 0 and r["iw_samples_per_s"] > 0
    assert 0 < r["nll"] < 784 * 0.7  # an untrained 5-layer ladder scores a little under 784 ln 2 ≈ 543 nats
    text = capsys.readouterr().out
    assert "images/s" in text and f"{r['nll']:.2f}" in text and "importance samples/s" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: there is nothing to refuse")
def test_gpu_check_says_what_to_do_without_a_gpu(tiny_data, tmp_path, capsys):
    rc = gpu_check.main(["--data-root", str(tiny_data), "--out", str(tmp_path / "x.json")])
    assert rc == 2
    assert "no CUDA GPU; use --device cpu" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
