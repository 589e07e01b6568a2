"""lvae/experiments/ablations.py refuses a budget that would measure an unfinished warm-up."""

import subprocess
import sys
from pathlib import Path



def test_a_budget_shorter_than_twice_the_longest_warmup_is_refused(tmp_path):
    out = tmp_path / "ablations.json"
    r = subprocess.run([sys.executable, "-m", "lvae.experiments.ablations", "--epochs", "9", "--out", str(out)], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 1 and "shorter than twice the longest warm-up (5 epochs)" in r.stderr and "--epochs 10" in r.stderr
    assert not out.exists()
