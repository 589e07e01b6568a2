"""Bad input is refused before any work, with one line that says what to fix, and nothing
already on disk (run folder, data folder) is lost or changed: every file under the test's
folder is hashed before and after, and no file may appear, vanish or change."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from lvae.cli import main
from lvae.data import read_idx, write_idx
from conftest import write_tiny_dataset


@dataclass
class World:
    """What a case sees: tiny data, a finished one-epoch run, and a path no run has used."""

    tmp: Path
    data: Path
    run: Path
    new: Path

    def edit_config(self, change: Callable[[dict], None]) -> None:
        cfg = json.loads((self.run / "config.json").read_text())
        change(cfg)
        (self.run / "config.json").write_text(json.dumps(cfg))


@dataclass
class Case:
    id: str
    argv: Callable[[World], list]
    message: str  # must appear in the error line
    setup: Callable[[World], None] | None = None
    argparse: bool = False  # argparse's own usage + error lines (exit 2)


def train(w: World, *extra) -> list:
    return ["train", "--epochs", "1", "--batch-size", "32", "--data-root", w.data, "--no-progress", *extra]


def resume(w: World, *extra) -> list:
    return ["train", "--resume", w.run, "--data-root", w.data, "--no-progress", *extra]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def malicious_checkpoint(w: World) -> None:
    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(w.tmp / "pwned"),))

    (w.run / "checkpoint.pt").unlink()  # a hard link to the numbered file: replace, don't write through
    torch.save({"model": Payload()}, w.run / "checkpoint.pt")


def inverted_copy_of_data(w: World) -> None:
    """Another data folder with the same number of images but other pixels."""
    shutil.copytree(w.data, w.tmp / "other")
    images = w.tmp / "other" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    inverted = 255 - read_idx(images)
    images.unlink()
    write_idx(images, inverted)


def no_cuda(w: World) -> None:
    w.monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # type: ignore[attr-defined]


CASES = [
    # configuration
    Case("zero-layers", lambda w: resume(w, "--epochs", "2"), "the model needs at least one latent layer",
         setup=lambda w: w.edit_config(lambda c: c["model"].update(layers=[]))),
    Case("negative-beta", lambda w: train(w, "--beta-end", "-1", "--out", w.new), "beta end must be >= 0.0, got -1.0"),
    Case("nan-beta", lambda w: train(w, "--beta-end", "nan", "--out", w.new), "beta end must be a finite number, got nan"),
    Case("inf-beta", lambda w: train(w, "--beta-end", "inf", "--out", w.new), "beta end must be a finite number, got inf"),
    Case("warmup-ends-before-it-starts", lambda w: train(w, "--warmup-iterations", "0", "--out", w.new),
         "beta schedule steps (the warm-up must end after it starts) must be a positive integer, got 0"),
    Case("warmup-falls", lambda w: train(w, "--beta-end", "0", "--out", w.new), "beta warm-up must rise: start 0.0001 is above end 0.0"),
    Case("batch-larger-than-data", lambda w: train(w, "--batch-size", "512", "--out", w.new),
         "batch size 512 is larger than the data (256 images); lower --batch-size"),
    Case("batch-larger-than-limit", lambda w: train(w, "--limit", "16", "--out", w.new),
         "batch size 32 is larger than the data (--limit 16); lower --batch-size"),
    Case("zero-epochs", lambda w: train(w, "--epochs", "0", "--out", w.new), "epochs must be a positive integer, got 0"),
    Case("negative-lr", lambda w: train(w, "--lr", "-0.001", "--out", w.new), "learning rate must be > 0, got -0.001"),
    Case("zero-grad-clip", lambda w: train(w, "--grad-clip", "0", "--out", w.new), "grad_clip must be > 0 (or left unset)"),
    Case("zero-checkpoint-every", lambda w: train(w, "--checkpoint-every", "0", "--out", w.new), "checkpoint_every must be a positive integer, got 0"),
    Case("zero-test-every", lambda w: train(w, "--test-every", "0", "--out", w.new), "test_every must be a positive integer, got 0"),
    Case("negative-free-bits", lambda w: train(w, "--free-bits", "-1", "--out", w.new), "free_bits must be >= 0.0, got -1.0"),
    Case("unknown-likelihood", lambda w: resume(w, "--epochs", "2"), "unknown likelihood 'poisson'; choose one of ('gaussian', 'bernoulli')",
         setup=lambda w: w.edit_config(lambda c: c["model"].update(likelihood="poisson"))),
    Case("unknown-amp", lambda w: train(w, "--amp", "fp16", "--out", w.new), "argument --amp: invalid choice: 'fp16'", argparse=True),
    Case("no-out", lambda w: train(w), "say where the run goes: --out RUN_DIR"),
    # data
    Case("unknown-data", lambda w: train(w, "--data", "svhn", "--out", w.new), "argument --data: invalid choice: 'svhn'", argparse=True),
    Case("data-not-fetched", lambda w: train(w, "--data", "fashion-mnist", "--out", w.new),
         "fashion-mnist not found in {data}/FashionMNIST/raw; fetch it with: python -m lvae data --dataset fashion-mnist --root {data}"),
    Case("data-truncated", lambda w: train(w, "--out", w.new), "train-images-idx3-ubyte is truncated",
         setup=lambda w: truncate(w.data / "MNIST" / "raw" / "train-images-idx3-ubyte")),
    # device
    Case("unknown-device", lambda w: train(w, "--device", "tpu", "--out", w.new), "unknown device 'tpu'; choose 'cpu' or 'cuda'"),
    Case("malformed-cuda", lambda w: train(w, "--device", "cuda:x", "--out", w.new), "unknown device 'cuda:x'; use cpu, cuda or cuda:N"),
    Case("cuda-without-gpu", lambda w: train(w, "--device", "cuda", "--out", w.new),
         "device 'cuda' asked for, but this machine has no CUDA GPU; use --device cpu", setup=no_cuda),
    # output folder
    Case("out-holds-a-run", lambda w: train(w, "--out", w.run),
         "{run} already holds a run (checkpoint-00000002.pt, checkpoint.pt, config.json, epochs.jsonl, history.jsonl); "
         "continue it with --resume {run}, or replace it with --overwrite"),
    Case("overwrite-with-bad-batch", lambda w: train(w, "--out", w.run, "--overwrite", "--batch-size", "512"),
         "batch size 512 is larger than the data (256 images)"),
    Case("out-is-a-file", lambda w: train(w, "--out", w.tmp / "notes.txt"), "--out {tmp}/notes.txt is a file, not a folder",
         setup=lambda w: (w.tmp / "notes.txt").write_text("mine")),
    # resume
    Case("resume-not-a-run", lambda w: ["train", "--resume", w.new], "{new}: not a run folder (no config.json)"),
    Case("resume-fixed-flag", lambda w: resume(w, "--batch-size", "64", "--seed", "3"),
         "--batch-size, --seed cannot be used with --resume ({run}/config.json fixes the run); a resumed run may change only --epochs"),
    Case("resume-and-overwrite", lambda w: resume(w, "--overwrite"), "--overwrite cannot be used with --resume"),
    Case("resume-finished-run", lambda w: resume(w), "{run} has already trained 1 epoch(s); to train further, pass --epochs N with N > 1"),
    Case("resume-cosine-past-its-horizon", lambda w: resume(w, "--epochs", "2"),
         "2 epochs go past the 1 that this run's cosine learning rate was laid out over when it started, and past them the rate stays at --lr-min 0",
         setup=lambda w: w.edit_config(lambda c: c["train"].update(lr_schedule="cosine"))),
    Case("resume-other-data", lambda w: ["train", "--resume", w.run, "--data-root", w.tmp / "other", "--epochs", "2"],
         "checkpoint.pt was trained on other data (64 images from ", setup=lambda w: inverted_copy_of_data(w)),
    Case("resume-config-json-corrupt", lambda w: resume(w, "--epochs", "2"), "{run}/config.json: not a valid run config (JSONDecodeError",
         setup=lambda w: (w.run / "config.json").write_text('{"name": "seed", ')),
    Case("resume-before-first-checkpoint", lambda w: resume(w, "--epochs", "2"),
         "{run}/checkpoint.pt: no checkpoint yet (the run stopped before its first one); start it again with --out {run} --overwrite",
         setup=lambda w: [p.unlink() for p in w.run.glob("*.pt")]),
    # checkpoints
    Case("checkpoint-truncated", lambda w: resume(w, "--epochs", "2"), "{run}/checkpoint.pt: not a usable checkpoint (truncated, corrupt or not made by lvae)",
         setup=lambda w: truncate(w.run / "checkpoint.pt")),
    # seeded: on these bytes torch's safe unpickler raises IndexError (it used to be unseeded random bytes, which failed only now and then)
    Case("checkpoint-random-bytes", lambda w: resume(w, "--epochs", "2"), "{run}/checkpoint.pt: not a usable checkpoint",
         setup=lambda w: ((w.run / "checkpoint.pt").unlink(), (w.run / "checkpoint.pt").write_bytes(random.Random(2).randbytes(4096)))),
    Case("checkpoint-runs-code", lambda w: resume(w, "--epochs", "2"),
         "{run}/checkpoint.pt: not a usable checkpoint (corrupt, or not made by lvae): the safe loader (weights_only=True) refused it: "
         "Trying to load unsupported GLOBAL posix.mkdir", setup=malicious_checkpoint),
    Case("checkpoint-not-lvae", lambda w: resume(w, "--epochs", "2"), "{run}/checkpoint.pt: not an lvae training checkpoint (no config, optimizer, rng, state)",
         setup=lambda w: ((w.run / "checkpoint.pt").unlink(), torch.save({"model": {}}, w.run / "checkpoint.pt"))),
    Case("checkpoint-other-config", lambda w: resume(w, "--epochs", "2"),
         "{run}/checkpoint.pt was made with another configuration; differing fields: objective.kl_mode: checkpoint 'paper', this run 'seed'; "
         "train.seed: checkpoint 0, this run 7",
         setup=lambda w: w.edit_config(lambda c: (c["objective"].update(kl_mode="seed"), c["train"].update(seed=7)))),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """One tiny finished run (2 iterations on the first 64 images), copied into each case's folder."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("source")
    data = write_tiny_dataset(root / "data")
    assert main(["train", "--config", "paper", "--epochs", "1", "--batch-size", "32", "--limit", "64", "--data-root", str(data),
                 "--out", str(root / "run"), "--no-progress"]) == 0
    return data, root / "run"


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_clearly_and_nothing_on_disk_changes(case: Case, finished_run, tmp_path, monkeypatch, capsys):
    data, run = finished_run
    w = World(tmp_path, tmp_path / "data", tmp_path / "run", tmp_path / "new")
    shutil.copytree(data, w.data)
    shutil.copytree(run, w.run)
    w.monkeypatch = monkeypatch  # type: ignore[attr-defined]
    if case.setup:
        case.setup(w)
    before = snapshot(tmp_path)
    capsys.readouterr()
    try:
        rc = main([str(a) for a in case.argv(w)])
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    message = case.message.format(run=w.run, data=w.data, tmp=w.tmp, new=w.new)
    assert rc == 2
    assert message in err, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    if case.argparse:
        assert lines[0].startswith("usage:") and lines[-1].startswith("python -m lvae train: error: ") and message in lines[-1]
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "pwned").exists()
