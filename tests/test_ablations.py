"""lvae/experiments/ablations.py refuses a budget that would measure an unfinished warm-up."""

import subprocess

import pytest
import sys
from pathlib import Path



def test_a_budget_shorter_than_twice_the_longest_warmup_is_refused(tmp_path):
    out = tmp_path / "ablations.json"
    r = subprocess.run([sys.executable, "-m", "lvae.experiments.ablations", "--epochs", "9", "--out", str(out)], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 1 and "shorter than twice the longest warm-up (5 epochs)" in r.stderr and "--epochs 10" in r.stderr
    assert not out.exists()


def test_an_arm_is_kept_dropped_or_left_by_the_one_verdict_rule():
    import torch

    from lvae.experiments.ablations import keep_or_drop

    g = torch.Generator().manual_seed(0)
    base = -90 + torch.randn(3, 500, generator=g)  # (seeds, images) log p(x)
    effect, word = keep_or_drop(base + 0.5, base)  # every image 0.5 nats likelier: the NLL drops
    assert word == "kept" and effect.mean == pytest.approx(-0.5)
    assert keep_or_drop(base - 0.5, base)[1] == "dropped"
    noisy = base + torch.tensor([[-1.0], [0.2], [1.4]])  # seeds disagree: a mean gain of 0.2 is not significant
    assert keep_or_drop(noisy, base)[1] == "no clear effect"
