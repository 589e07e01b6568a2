"""torchrun: 2 CPU processes (gloo, DistributedDataParallel) against 1 process, and resume under torchrun.

Run as a script (`python tests/test_distributed.py train ...`, alone or under torchrun) this file
is `python -m lvae` with noise-free latents; see `test_two_processes_match_one_at_equal_global_batch`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from lvae import checkpoint as ckpt
from lvae.cli import main
from lvae.training import read_jsonl
from signal_hook import ENV as TEST_SIGNAL_ENV
from conftest import run_lvae

TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
pytestmark = pytest.mark.slow  # real torchrun processes: `make test-fast` leaves them out


def load(run: Path) -> dict:
    return torch.load(run / ckpt.LATEST, weights_only=True)


def test_two_processes_match_one_at_equal_global_batch(tmp_path, tiny_data):
    """Same global batch of 32 (2 ranks x 16 against 1 x 32), seed config: Gaussian likelihood, no batch norm.

    Latent noise is the one thing that must differ between the two runs (each rank draws its
    own), so both run with z = the mean of each Gaussian (this file as a script). What is left
    differs only in float32 rounding: a mean over 32 images against the mean of two means over
    16, and DDP's gradient all-reduce. Through 16 Adam steps (measured here: 1.5e-5 relative in
    the logged terms, 3e-8 absolute in the parameters) the test allows 1e-4 relative in every
    logged term and 1e-6 absolute in every parameter (a thousandth of one Adam step at lr 1e-3).
    A wrong data split, gradient scale or logging rank misses both by orders of magnitude: the
    loss itself falls by 7 % over these steps.
    """
    args = ["train", "--config", "seed", "--epochs", "2", "--batch-size", "32", "--checkpoint-every", "100",
            "--data-root", tiny_data, "--no-progress"]
    one = run_lvae(*args, "--out", tmp_path / "one", launcher=(__file__,))
    two = run_lvae(*args, "--out", tmp_path / "two", launcher=(*TORCHRUN, __file__))
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert two.stdout.count("done:") == 1  # rank 0 alone reports and writes
    h1, h2 = read_jsonl(tmp_path / "one" / "history.jsonl"), read_jsonl(tmp_path / "two" / "history.jsonl")
    assert [r["iteration"] for r in h2] == list(range(16))
    for a, b in zip(h1, h2):
        for key in ("loss", "recon", "elbo", "grad_norm"):
            assert abs(a[key] - b[key]) <= 1e-4 * abs(a[key]), (a["iteration"], key, a[key], b[key])
        assert torch.allclose(torch.tensor(a["kl"]), torch.tensor(b["kl"]), rtol=1e-4, atol=1e-6)
    assert h1[-1]["loss"] < 0.95 * h1[0]["loss"]
    p1, p2 = load(tmp_path / "one"), load(tmp_path / "two")
    assert len(p2["rng"]) == 2
    worst = max((p1["model"][k].float() - p2["model"][k].float()).abs().max().item() for k in p1["model"])
    assert worst < 1e-6, worst


def test_torchrun_ctrl_c_then_resume_is_bit_identical(tmp_path, tiny_data, capsys):
    """Real noise, paper config (dynamic binarization, batch norm): every rank's RNG is saved and restored.

    Only rank 0 gets SIGINT; the flag is all-reduced, so both ranks stop after the same step.
    The same checkpoint also resumes in one process, with a note that the noise starts afresh.
    """
    args = ["train", "--config", "paper", "--epochs", "2", "--batch-size", "32", "--checkpoint-every", "3",
            "--data-root", tiny_data, "--no-progress"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert run_lvae(*args, "--out", ref, launcher=(*TORCHRUN, "-m", "lvae")).returncode == 0
    stopped = run_lvae(*args, "--out", run, launcher=(*TORCHRUN, "-m", "lvae"), env={TEST_SIGNAL_ENV: "SIGINT@4"})
    assert stopped.returncode != 0
    assert (f"SIGINT at iteration 5: checkpoint saved in {run / ckpt.LATEST}. "
            f"Resume with: torchrun --nproc_per_node 2 -m lvae train --resume {run}") in stopped.stderr
    sd = load(run)
    assert sd["state"]["iteration"] == 5 and len(sd["rng"]) == 2
    assert not torch.equal(sd["rng"][0]["torch"], sd["rng"][1]["torch"])  # the ranks draw different noise
    shutil.copytree(run, tmp_path / "single")
    resumed = run_lvae("train", "--resume", run, "--data-root", tiny_data, "--no-progress", launcher=(*TORCHRUN, "-m", "lvae"))
    assert resumed.returncode == 0, resumed.stderr
    a, b = load(ref), load(run)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert (ref / "history.jsonl").read_text() == (run / "history.jsonl").read_text()

    torch.set_num_threads(1)
    assert main(["train", "--resume", str(tmp_path / "single"), "--data-root", str(tiny_data), "--no-progress"]) == 0
    assert "was written by 2 process(es) and this run has 1; ranks without a saved state draw fresh noise" in capsys.readouterr().err
    assert load(tmp_path / "single")["state"]["iteration"] == 16


if __name__ == "__main__":  # `python -m lvae` with z = the mean of each Gaussian: no sampling noise
    from lvae.latents import Gaussian

    Gaussian.sample = lambda self, temperature=1.0: self.mu
    sys.exit(main(sys.argv[1:]))


def test_a_finished_run_waits_for_every_rank_before_leaving_and_a_failed_one_does_not(monkeypatch):
    """The barrier keeps a rank from tearing down its connections while rank 0 still writes its last files;
    after an error the other ranks may be gone, and waiting for them would hang."""
    from lvae import distributed

    calls: list[str] = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.append("destroy"))
    distributed.shutdown(finished=True)
    assert calls == ["barrier", "destroy"]
    calls.clear()
    distributed.shutdown(finished=False)
    assert calls == ["destroy"]
