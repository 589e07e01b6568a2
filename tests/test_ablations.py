"""lvae/experiments/ablations.py refuses a budget that would measure an unfinished warm-up."""

import subprocess

import pytest
import sys
from pathlib import Path



@pytest.mark.slow
def test_a_budget_shorter_than_twice_the_longest_warmup_is_refused(tmp_path):
    out = tmp_path / "ablations.json"
    r = subprocess.run([sys.executable, "-m", "lvae.experiments.ablations", "--epochs", "9", "--out", str(out)], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 1 and "shorter than twice the longest warm-up (5 epochs)" in r.stderr and "--epochs 10" in r.stderr
    assert not out.exists()


@pytest.mark.slow
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


@pytest.mark.slow
def test_an_equal_cpu_time_budget_stops_each_arm_and_records_what_it_reached(tmp_path, tiny_data, monkeypatch):
    """A clock that gains 3 CPU seconds per reading, and test passes that cost 1 s each: the budget counts
    training only, 2 s per epoch, so with 5 seconds each arm stops after its third epoch (4 s < 5 s after the
    second, 6 s after the third), its schedules still laid out over --epochs."""
    import itertools
    import json

    import torch

    from lvae import training
    from lvae.experiments import ablations
    from lvae.schedules import lr_at
    from lvae.training import read_jsonl

    torch.set_num_threads(1)
    ticks = itertools.count(0.0, 3.0)
    monkeypatch.setattr(ablations, "cpu_clock", lambda: next(ticks))
    test_ticks = itertools.count(0.0, 1.0)  # read before and after each test pass: 1 s per pass
    monkeypatch.setattr(training, "cpu_clock", lambda: next(test_ticks))
    monkeypatch.setenv("LVAE_DATA", str(tiny_data))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cpu.json"
    ablations.main(["--equal-cpu-seconds", "5", "--only", "baseline", "cosine", "ema", "--seeds", "1", "--iw-samples", "2",
                    "--limit", "16", "--out", str(out)])
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["baseline", "cosine", "ema"] and "verdict" in rows["ema"]
    for name, row in rows.items():
        assert row["training"]["cpu_seconds_budget"] == 5 and row["training"]["schedule_epochs"] == 12
        assert row["training"]["epochs_reached"] == [3] and row["training"]["cpu_seconds"] == [6.0]
        assert (row["seeds"][0]["epochs"], row["seeds"][0]["cpu_seconds"]) == (3, 6.0)
        run = tmp_path / "runs/paper-ablations-cpu" / f"{name}-s0"
        assert [r["epoch"] for r in read_jsonl(run / "epochs.jsonl")] == [0, 1, 2]
        history = read_jsonl(run / "history.jsonl")  # 256 images, batch 256: one step per epoch
        train = ablations.make_config(ablations.ROWS[name][1], 12, 0).train
        assert [h["lr"] for h in history] == [lr_at(train, i, 12) for i in range(3)]
    lr = [h["lr"] for h in read_jsonl(tmp_path / "runs/paper-ablations-cpu/cosine-s0/history.jsonl")]
    assert 0.98 * 2e-3 < lr[1] < 2e-3  # the cosine over 12 epochs has barely begun (over 2 it would be at 1e-3)
    assert "ema" in torch.load(tmp_path / "runs/paper-ablations-cpu/ema-s0/checkpoint.pt", weights_only=True)


def test_without_a_cpu_budget_the_arms_and_seeds_are_the_old_ones(monkeypatch):
    from lvae.experiments import ablations

    assert ablations.EQUAL_EPOCH_ROWS == ("baseline", "cosine", "warmup-2", "free-bits", "wide")
    assert set(ablations.ROWS) == {*ablations.EQUAL_EPOCH_ROWS, *ablations.EQUAL_CPU_ROWS}
    assert ablations.ROWS["bf16"][1] == {"train.amp": "bf16"} and ablations.ROWS["ema"][1] == {"train.ema_decay": 0.999}


@pytest.mark.slow
def test_a_rerun_with_more_seeds_trains_only_the_new_ones_and_scores_the_old_ones_alike(tmp_path, tiny_data, monkeypatch, capsys):
    """Seed 0 trained by a first run is reused by a second with --seeds 2 (its folder untouched, its row the
    same), seed 1 is trained; a third run with another budget trains seed 0 again."""
    import json

    import torch

    from lvae.experiments import ablations

    torch.set_num_threads(1)
    monkeypatch.setenv("LVAE_DATA", str(tiny_data))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cpu.json"
    args = ["--only", "baseline", "--iw-samples", "2", "--limit", "16", "--out", str(out)]
    ablations.main(["--equal-cpu-seconds", "0.01", "--seeds", "1", *args])
    first = json.loads(out.read_text())["rows"][0]["seeds"][0]
    run = tmp_path / "runs/paper-ablations-cpu/baseline-s0"
    stamp = (run / "checkpoint.pt").stat().st_mtime_ns
    capsys.readouterr()
    ablations.main(["--equal-cpu-seconds", "0.01", "--seeds", "2", *args])
    assert "baseline seed 0: trained earlier" in capsys.readouterr().out
    row = json.loads(out.read_text())["rows"][0]
    assert row["seeds"][0] == first and (run / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert row["seeds"][1]["seed"] == 1 and (tmp_path / "runs/paper-ablations-cpu/baseline-s1/arm.json").is_file()
    ablations.main(["--equal-cpu-seconds", "0.02", "--seeds", "1", *args])
    assert "trained earlier" not in capsys.readouterr().out and (run / "checkpoint.pt").stat().st_mtime_ns != stamp


@pytest.mark.slow
def test_the_stage_arms_continue_each_seeds_base_as_train_finetune_would_and_are_reused(tmp_path, tiny_data, monkeypatch):
    import json

    import torch

    from lvae.experiments import stage_ablations
    from lvae.training import read_jsonl

    torch.set_num_threads(1)
    monkeypatch.setenv("LVAE_DATA", str(tiny_data))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "stages.json"
    args = ["--epochs", "1", "--seeds", "2", "--iw-samples", "2", "--limit", "16", "--base-cpu-seconds", "0.01", "--out", str(out)]
    stage_ablations.main(args)
    r = json.loads(out.read_text())
    rows = {row["name"]: row for row in r["rows"]}
    assert list(rows) == ["continue", "finetune", "finetune-iw"]
    assert [rows[n]["against"] for n in rows] == [None, "continue", "finetune"]
    assert rows["finetune"]["verdict"].split(" (")[0].endswith("against `continue`")
    assert all(len(row["seeds"]) == 2 and len(row["training"]["cpu_seconds"]) == 2 for row in rows.values())
    for seed in range(2):
        base = f"runs/paper-ablations-cpu/baseline-s{seed}"  # relative, as `train --finetune` run from the repo records it
        for name, lr, schedule, bound in (("continue", 2e-3, "constant", "elbo"), ("finetune", 2e-4, "cosine", "elbo"),
                                          ("finetune-iw", 2e-4, "cosine", "iw")):
            run = tmp_path / f"runs/paper-ablations-stages/{name}-s{seed}"
            cfg = json.loads((run / "config.json").read_text())
            assert cfg["train"]["finetune_from"] == base and cfg["train"]["seed"] == seed
            assert (cfg["train"]["lr"], cfg["train"]["lr_schedule"], cfg["objective"]["bound"]) == (lr, schedule, bound)
            assert cfg["objective"]["beta"]["kind"] == "constant"  # the base's warm-up is not run again
            history = read_jsonl(run / "history.jsonl")
            assert history[0]["lr"] == pytest.approx(lr)
    assert json.loads((tmp_path / "runs/paper-ablations-stages/finetune-iw-s0/config.json").read_text())["objective"]["iw_samples"] == 10

    def no_training(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(stage_ablations, "train_arm", no_training)
    monkeypatch.setattr("lvae.experiments.ablations.train_arm", no_training)
    out.unlink()
    stage_ablations.main(args)  # every base and arm is reused: same scores
    again = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    assert {n: row["nll"] for n, row in again.items()} == {n: row["nll"] for n, row in rows.items()}
