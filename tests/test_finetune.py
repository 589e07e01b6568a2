"""`train --finetune FROM_RUN`: a new run that starts from another run's weights with a fresh
optimizer, as the paper's fine-tuning phase (a lower learning rate, then the IW bound with K = 10)."""

import hashlib
import json

import pytest
import torch

from lvae.checkpoint import load_run
from lvae.cli import main
from lvae.model import build_model
from lvae.training import read_jsonl
from lvae.weights import save_weights


def file_digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_finetune_starts_a_new_run_from_the_weights_and_leaves_the_source_alone(tmp_path, tiny_data, capsys):
    src, ft = tmp_path / "src", tmp_path / "ft"
    common = ["--data-root", str(tiny_data), "--no-progress"]
    assert main(["train", "--config", "paper", "--depth", "2", "--epochs", "2", "--batch-size", "64", "--out", str(src), *common]) == 0
    before = file_digests(src)
    # lr 1e-9: Adam moves each weight by about 1e-9 a step, so the new run's weights must still be the source's
    assert main(["train", "--finetune", str(src), "--out", str(ft), "--lr", "1e-9", "--epochs", "1",
                 "--objective", "iw", "--iw-train", "3", *common]) == 0
    assert file_digests(src) == before  # FROM_RUN is never modified

    cfg = json.loads((ft / "config.json").read_text())
    assert cfg["name"] == "paper-finetune" and cfg["train"]["finetune_from"] == str(src)
    assert (cfg["objective"]["bound"], cfg["objective"]["iw_samples"]) == ("iw", 3)
    assert (cfg["train"]["lr"], cfg["train"]["lr_schedule"], cfg["train"]["epochs"]) == (1e-9, "constant", 1)
    rows = read_jsonl(ft / "history.jsonl")
    assert len(rows) == 4 and all(r["beta"] == 1.0 for r in rows)  # the warm-up is over: beta held at its final value

    _, source = load_run(src)
    _, tuned = load_run(ft)
    fresh = build_model("lvae", source.config)
    pairs = list(zip(source.parameters(), tuned.parameters(), fresh.parameters()))
    assert all(torch.allclose(s, t, atol=1e-6) for s, t, _ in pairs)
    assert not all(torch.allclose(s, f, atol=1e-3) for s, _, f in pairs)  # the source is no fresh initialisation
    optimizer = torch.load(ft / "checkpoint.pt", weights_only=True)["optimizer"]
    assert {float(s["step"]) for s in optimizer["state"].values()} == {4.0}  # a fresh optimizer: this run's 4 steps, not 8 + 4

    # a weights file serves as FROM_RUN too
    save_weights(load_run(src)[0], source, tmp_path / "src.pt")
    assert main(["train", "--finetune", str(tmp_path / "src.pt"), "--out", str(tmp_path / "ft2"), "--lr", "1e-4", "--epochs", "1", *common]) == 0
    assert json.loads((tmp_path / "ft2" / "config.json").read_text())["train"]["finetune_from"] == str(tmp_path / "src.pt")

    capsys.readouterr()
    refusals = [(["--finetune", str(src), "--out", str(src), "--lr", "1e-4", "--epochs", "1"], "which fine-tuning never modifies"),
                (["--finetune", str(src), "--out", str(tmp_path / "x"), "--epochs", "1"], "--finetune needs --lr"),
                (["--finetune", str(src), "--out", str(tmp_path / "x"), "--lr", "1e-4", "--epochs", "1", "--depth", "1"],
                 "--depth cannot be used with --finetune"),
                (["--resume", str(ft), "--finetune", str(src)], "--finetune cannot be used with --resume")]
    for args, message in refusals:
        assert main(["train", *args, *common]) == 2
        assert message in capsys.readouterr().err
    assert file_digests(src) == before and not (tmp_path / "x").exists()


@pytest.mark.slow
def test_finetune_does_not_inherit_the_source_schedule_so_its_cosine_anneals_to_zero(tmp_path, tiny_data, capsys):
    """paper-best's main stage anneals to lr_min 2e-4; a fine-tuning cosine from 2e-4 that kept that lr_min stayed at
    2e-4 throughout, and one from 1e-4 climbed to 2e-4 (how the recipe's first fine-tuning stages ran)."""
    src, ft = tmp_path / "src", tmp_path / "ft"
    common = ["--data-root", str(tiny_data), "--no-progress", "--batch-size", "64"]
    assert main(["train", "--config", "paper", "--depth", "2", "--epochs", "1", "--lr-schedule", "cosine", "--lr-min", "2e-4",
                 "--out", str(src), *common]) == 0
    assert main(["train", "--finetune", str(src), "--out", str(ft), "--lr", "1e-4", "--lr-schedule", "cosine", "--epochs", "2",
                 *common]) == 0
    assert json.loads((ft / "config.json").read_text())["train"]["lr_min"] == 0.0
    rates = [r["lr"] for r in read_jsonl(ft / "history.jsonl")]
    assert rates[0] == 1e-4 and all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] < 2e-5

    capsys.readouterr()  # a cosine that would climb is refused, with the fix in the message
    assert main(["train", "--finetune", str(src), "--out", str(tmp_path / "up"), "--lr", "1e-4", "--lr-schedule", "cosine",
                 "--lr-min", "2e-4", "--epochs", "2", *common]) == 2
    assert "give an --lr-min below --lr" in capsys.readouterr().err and not (tmp_path / "up").exists()
