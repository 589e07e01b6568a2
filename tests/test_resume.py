"""Never lose a run: atomic rotating checkpoints, exact resume after SIGKILL and Ctrl-C,
NaN and full-disk stops that keep the last good checkpoint, safe loading, gradient clipping."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lvae import checkpoint as ckpt
from lvae.cli import main
from lvae.config import seed_config
from lvae.data import load_split
from lvae.losses import LossTerms
from lvae.training import NonFiniteError, Trainer, read_jsonl
import signal_hook
from signal_hook import ENV as TEST_SIGNAL_ENV
from conftest import dense_config, run_lvae

pytestmark = pytest.mark.slow  # real runs, killed and resumed: `make test-fast` leaves them out

# paper config: batch norm buffers, dynamic binarization and latent noise all have state to restore.
PAPER = ["--config", "paper", "--batch-size", "32", "--checkpoint-every", "3", "--no-progress"]  # 256 images: 8 iterations/epoch


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread is as fast, and never stalls waiting for a busy second core."""
    torch.set_num_threads(1)


def load(run: Path) -> dict:
    return torch.load(run / ckpt.LATEST, weights_only=True)


def position(run: Path) -> dict:
    """Where the run's checkpoint stands: iteration, epoch and batch within it."""
    return {k: load(run)["state"][k] for k in ("iteration", "epoch", "batch_in_epoch")}


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in rows]


def test_sigkill_mid_epoch_then_sigterm_then_resume_is_bit_identical(tmp_path, tiny_data):
    """The reference and the last leg run in this process with one thread, like the subprocesses."""
    args = [*PAPER, "--epochs", "2", "--data-root", tiny_data]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["train", *map(str, args), "--out", str(ref)]) == 0

    killed = run_lvae("train", *args, "--out", run, env={TEST_SIGNAL_ENV: "SIGKILL@5"})
    assert killed.returncode == -signal.SIGKILL
    assert position(run) == {"iteration": 3, "epoch": 0, "batch_in_epoch": 3}  # mid-epoch
    assert len(read_jsonl(run / "history.jsonl")) == 3  # rows of iterations 3 and 4 died with the process

    # SIGTERM (a cluster's preemption; Ctrl-C is tested below) after iteration 10: the next step
    # completes, is saved, and the message says how to resume.
    stopped = run_lvae("train", "--resume", run, "--data-root", tiny_data, "--no-progress", env={TEST_SIGNAL_ENV: "SIGTERM@10"})
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert f"SIGTERM at iteration 11: checkpoint saved in {run / ckpt.LATEST}. Resume with: python -m lvae train --resume {run}" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert position(run) == {"iteration": 11, "epoch": 1, "batch_in_epoch": 3}

    assert main(["train", "--resume", str(run), "--data-root", str(tiny_data), "--no-progress"]) == 0
    a, b = load(ref), load(run)
    assert_same_tensors(a["model"], b["model"])
    assert_same_tensors(a["optimizer"]["state"][0], b["optimizer"]["state"][0])
    assert a["state"] == b["state"] and a["rng"][0]["binarize"].equal(b["rng"][0]["binarize"])
    assert (ref / "history.jsonl").read_text() == (run / "history.jsonl").read_text()
    assert without_seconds(read_jsonl(ref / "epochs.jsonl")) == without_seconds(read_jsonl(run / "epochs.jsonl"))
    # the last two numbered checkpoints are kept, checkpoint.pt is the newest; no temporary files remain
    assert sorted(p.name for p in run.glob("*.pt")) == ["checkpoint-00000015.pt", "checkpoint-00000016.pt", "checkpoint.pt"]
    assert not list(run.glob(".*"))


def test_ctrl_c_from_outside_saves_and_prints_how_to_resume(tmp_path, tiny_data):
    """A real SIGINT sent to the process (no hook): exit 130, one message line, resumable."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "lvae", "train", *PAPER, "--epochs", "1000", "--data-root", str(tiny_data), "--out", str(run)]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / ckpt.LATEST).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    state = load(run)["state"]
    assert err.strip() == (f"SIGINT at iteration {state['iteration']}: checkpoint saved in {run / ckpt.LATEST}. "
                           f"Resume with: python -m lvae train --resume {run}")
    assert len(read_jsonl(run / "history.jsonl")) == state["iteration"]
    assert main(["train", "--resume", str(run), "--data-root", str(tiny_data), "--epochs", str(state["epoch"] + 1), "--no-progress"]) == 0
    assert load(run)["state"]["epoch"] == state["epoch"] + 1


def tiny_trainer(run: Path, tiny_data: Path, **train) -> Trainer:
    cfg = seed_config()
    cfg.model = dense_config(2, likelihood="bernoulli")
    cfg.train.batch_size = 32
    cfg.train.epochs = 2
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return Trainer(cfg, run, load_split("mnist", "train", tiny_data), load_split("mnist", "test", tiny_data), progress=False)


def nan_at(monkeypatch, iteration: int, layer: int) -> None:
    """Make the KL of `layer` NaN at the `iteration`-th training step (0-based)."""
    import lvae.training

    real, calls = lvae.training.objective_loss, {"n": 0}

    def objective_loss(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] - 1 != iteration:
            return terms
        kl = list(terms.kl)
        kl[layer] = kl[layer] * float("nan")
        return LossTerms(loss=terms.loss + kl[layer], recon=terms.recon, kl=kl, elbo=terms.elbo)

    monkeypatch.setattr(lvae.training, "objective_loss", objective_loss)


def test_nan_in_a_kl_stops_with_the_layer_and_keeps_the_last_good_checkpoint(tmp_path, tiny_data, monkeypatch, capsys):
    run = tmp_path / "run"
    nan_at(monkeypatch, iteration=5, layer=1)
    rc = main(["train", "--config", "paper", "--batch-size", "32", "--epochs", "2", "--checkpoint-every", "2",
               "--data-root", str(tiny_data), "--out", str(run), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: iteration 5: the KL of layer 1 (0 = bottom) is nan")
    assert f"the last good checkpoint {run / ckpt.LATEST} (iteration 4) is intact" in err
    assert f"resume with: python -m lvae train --resume {run} --lr 0.0002 --grad-clip" in err
    sd = load(run)
    assert sd["state"]["iteration"] == 4 and all(torch.isfinite(v).all() for v in sd["model"].values() if v.is_floating_point())
    assert sorted(p.name for p in run.glob("checkpoint-*.pt")) == ["checkpoint-00000002.pt", "checkpoint-00000004.pt"]
    assert [r["iteration"] for r in read_jsonl(run / "history.jsonl")] == [0, 1, 2, 3, 4]  # the rows up to the failure
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--data-root", str(tiny_data), "--lr", "2e-4", "--grad-clip", "100", "--no-progress"]) == 0
    assert [r["iteration"] for r in read_jsonl(run / "history.jsonl")] == list(range(16))


def test_nan_gradient_names_the_parameter(tmp_path, tiny_data):
    t = tiny_trainer(tmp_path / "run", tiny_data, checkpoint_every=2)
    p = t.model.out_head.net[0].weight
    calls = {"n": 0}

    def poison(grad):
        calls["n"] += 1
        return grad * float("inf") if calls["n"] == 4 else grad

    p.register_hook(poison)
    with pytest.raises(NonFiniteError, match=r"iteration 3: the gradient norm is (nan|inf) \(first non-finite gradient: out_head\.net\.0\.weight\)"):
        t.fit()
    assert load(tmp_path / "run")["state"]["iteration"] == 2


def test_parameters_gone_non_finite_are_never_checkpointed(tmp_path, tiny_data):
    t = tiny_trainer(tmp_path / "run", tiny_data, checkpoint_every=2)
    name, first = next(t.model.named_parameters())
    steps = {"n": 0}

    def after_step(optimizer, args, kwargs):
        steps["n"] += 1
        if steps["n"] == 4:  # after the 4th step, just before the checkpoint of iteration 4
            first.data[0] = float("inf")

    t.optimizer.register_step_post_hook(after_step)
    with pytest.raises(NonFiniteError, match=rf"iteration 4: parameter {name} is no longer finite.*checkpoint\.pt \(iteration 2\) is intact"):
        t.fit()
    assert load(tmp_path / "run")["state"]["iteration"] == 2


def test_full_disk_stops_cleanly_and_the_previous_checkpoint_survives(tmp_path, tiny_data, monkeypatch, capsys):
    run = tmp_path / "run"
    real_fsync, writes = os.fsync, {"n": 0}

    def fsync(fd):
        writes["n"] += 1
        if writes["n"] > 2:  # config.json and the first checkpoint fit; then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(ckpt.os, "fsync", fsync)
    rc = main(["train", "--config", "paper", "--batch-size", "32", "--epochs", "1", "--checkpoint-every", "3",
               "--data-root", str(tiny_data), "--out", str(run), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == ckpt.EXIT_DISK_FULL and err.count("\n") == 1
    assert err.startswith(f"error: could not write {run / 'checkpoint-00000006.pt'}: no space left on device (the file needs ")
    assert f"free there); the last good checkpoint {run / ckpt.LATEST} (iteration 3) is intact; resume with: " in err
    assert load(run)["state"]["iteration"] == 3 and not list(run.glob(".*"))
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--data-root", str(tiny_data), "--no-progress"]) == 0
    assert load(run)["state"]["iteration"] == 8


def test_rotation_keeps_the_last_k_and_latest_is_the_newest(tmp_path, tiny_data):
    t = tiny_trainer(tmp_path / "run", tiny_data, checkpoint_every=1, keep_checkpoints=3, epochs=1)
    t.fit()
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("*.pt")) == ["checkpoint-00000006.pt", "checkpoint-00000007.pt", "checkpoint-00000008.pt", "checkpoint.pt"]
    assert (run / "checkpoint.pt").read_bytes() == (run / "checkpoint-00000008.pt").read_bytes()


def test_loading_never_runs_code_from_the_file(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"evil\.pt: not a usable checkpoint"):
        ckpt.load(tmp_path / "evil.pt")
    assert not marker.exists()


def test_grad_clip_bounds_the_gradient_and_logs_the_unclipped_norm(tmp_path, tiny_data):
    t = tiny_trainer(tmp_path / "run", tiny_data, grad_clip=1e-3)
    row, _ = t.step(t.train_split.images[:32], False)
    clipped = torch.norm(torch.stack([p.grad.norm() for p in t.model.parameters()]))
    assert row["grad_norm"] > 1e-2 and clipped.item() == pytest.approx(1e-3, rel=1e-4)


def test_bf16_autocast_runs_the_model_in_bf16_and_logs_float32(tmp_path, tiny_data):
    t = tiny_trainer(tmp_path / "run", tiny_data, amp="bf16", epochs=1)
    with t.autocast():
        assert t.net(t.train_split.images[:4]).x_logits.dtype == torch.bfloat16
    t.fit()
    rows = read_jsonl(tmp_path / "run" / "history.jsonl")
    assert len(rows) == 8 and all(torch.isfinite(torch.tensor([r["loss"], *r["kl"]])).all() for r in rows)
    assert all(p.dtype == torch.float32 for p in t.model.parameters())
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["amp"] == "bf16"


# ----------------------------------------------------------------------------- the schedules' horizon

# seed config (beta rises over the whole run) with a cosine lr: both span the run. 128 images, batch 32: 4 iterations/epoch.
SPANNING = ["--config", "seed", "--lr-schedule", "cosine", "--lr-min", "1e-4", "--batch-size", "32", "--limit", "128", "--no-progress"]
IPE = 4


def schedule_rows(run: Path) -> list[tuple[float, float]]:
    return [(r["lr"], r["beta"]) for r in read_jsonl(run / "history.jsonl")]


@pytest.mark.parametrize("new_epochs", [5, 2], ids=["longer", "shorter"])
def test_a_new_epochs_on_resume_never_rewrites_the_schedule_already_used(tmp_path, tiny_data, monkeypatch, new_epochs):
    """Started for 3 epochs, stopped in epoch 2, resumed with --epochs 5 (or 2): lr and beta
    up to epoch 3 are those of the uninterrupted 3-epoch run; after it they hold lr_min and beta's end."""
    args = [*SPANNING, "--epochs", "3", "--data-root", tiny_data]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["train", *map(str, args), "--out", str(ref)]) == 0
    with monkeypatch.context() as m:
        signal_hook.install("SIGINT@5", m)
        assert main(["train", *map(str, args), "--out", str(run)]) == 130
    assert main(["train", "--resume", str(run), "--epochs", str(new_epochs), "--data-root", str(tiny_data), "--no-progress"]) == 0

    planned, resumed = schedule_rows(ref), schedule_rows(run)
    assert len(planned) == 3 * IPE and len(resumed) == new_epochs * IPE
    assert resumed[: 3 * IPE] == planned[: new_epochs * IPE]  # the part both ran is the same, bit for bit
    assert planned[-1][1] == pytest.approx(0.5) and planned[-1][0] < 2e-4  # the plan: beta reaches its end as the lr falls
    assert all(row == (1e-4, 0.5) for row in resumed[3 * IPE :])  # past the horizon both hold their final values
    assert json.loads((run / "config.json").read_text())["train"]["schedule_epochs"] == 3


def test_a_run_saved_before_the_horizon_existed_keeps_its_own_epochs(tmp_path, tiny_data):
    """Older config.json and checkpoints have no schedule_epochs: the checkpoint's epochs are the horizon."""
    run = tmp_path / "run"
    assert main(["train", *SPANNING, "--epochs", "2", "--data-root", str(tiny_data), "--out", str(run)]) == 0
    before = schedule_rows(run)
    config = json.loads((run / "config.json").read_text())
    del config["train"]["schedule_epochs"]
    (run / "config.json").write_text(json.dumps(config))
    sd = load(run)
    del sd["config"]["train"]["schedule_epochs"]
    sd.pop("digest", None)  # checkpoints that old carried no digest either
    (run / ckpt.LATEST).unlink()  # a hard link to the numbered file: replace it, don't write through
    torch.save(sd, run / ckpt.LATEST)

    assert main(["train", "--resume", str(run), "--epochs", "3", "--data-root", str(tiny_data), "--no-progress"]) == 0
    after = schedule_rows(run)
    assert after[: 2 * IPE] == before and all(row == (1e-4, 0.5) for row in after[2 * IPE :])
    assert json.loads((run / "config.json").read_text())["train"]["schedule_epochs"] == 2


def test_a_run_with_a_moving_average_resumes_bit_identical(tmp_path, tiny_data, monkeypatch):
    """paper config (batch norm averaged, statistics recomputed on the average) with --ema-decay: killed after
    iteration 5 with the checkpoint of iteration 3 on disk, then resumed, it ends where an uninterrupted run does."""
    args = [*PAPER, "--epochs", "2", "--ema-decay", "0.9", "--data-root", tiny_data]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["train", *map(str, args), "--out", str(ref)]) == 0

    real_step = Trainer.step

    def killed_after_5(self, x, stop):
        if self.state.iteration == 5:
            raise SystemExit("killed")  # no checkpoint written: like SIGKILL
        return real_step(self, x, stop)

    monkeypatch.setattr(Trainer, "step", killed_after_5)
    with pytest.raises(SystemExit):
        main(["train", *map(str, args), "--out", str(run)])
    monkeypatch.setattr(Trainer, "step", real_step)
    assert position(run) == {"iteration": 3, "epoch": 0, "batch_in_epoch": 3}
    assert main(["train", "--resume", str(run), "--data-root", str(tiny_data), "--no-progress"]) == 0
    a, b = load(ref), load(run)
    assert a["config"]["train"]["ema_decay"] == 0.9 and a["ema"]["n_averaged"].item() == 16
    for key in ("model", "raw_model"):
        assert_same_tensors(a[key], b[key])
    assert_same_tensors(a["optimizer"]["state"][0], b["optimizer"]["state"][0])
    assert a["ema"]["n_averaged"].equal(b["ema"]["n_averaged"]) and a["state"] == b["state"]
    assert without_seconds(read_jsonl(ref / "epochs.jsonl")) == without_seconds(read_jsonl(run / "epochs.jsonl"))
    assert not torch.equal(a["model"]["up.0.1.weight"], a["raw_model"]["up.0.1.weight"])  # two sets of weights, both restored


def test_ema_decay_is_fixed_on_resume(tmp_path, tiny_data, capsys):
    run = tmp_path / "run"
    assert main(["train", *PAPER, "--epochs", "1", "--data-root", str(tiny_data), "--out", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "2", "--ema-decay", "0.9", "--data-root", str(tiny_data)]) == 2
    assert "--ema-decay cannot be used with --resume" in capsys.readouterr().err
