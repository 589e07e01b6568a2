"""The paper code's choices (docs/fidelity.md), each checked for doing what its row says, and the
first setup still loading as it was trained."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from lvae import checkpoint as ckpt
from lvae.batchnorm import batch_norm_layers, recompute_batch_norm
from lvae.config import FIRST_SETUP_MODEL, FIRST_SETUP_TRAIN, ModelConfig, RunConfig, named_config, paper_config
from lvae.data import synthetic_split
from lvae.model import LadderVAE, build_model
from lvae.training import Trainer

RESULTS = Path(__file__).resolve().parent.parent / "results"


def small_paper(**model) -> ModelConfig:
    cfg = paper_config().model
    cfg.layers = cfg.layers[:3]
    for key, value in model.items():
        setattr(cfg, key, value)
    return cfg


def test_the_ladder_reads_the_mean_below_when_told():
    model = build_model("lvae", small_paper(ladder_up="mean")).eval()
    assert model.up[1][0].in_features == 64  # mu_hat_0, not the 512 features
    x = torch.rand(8, 1, 28, 28).bernoulli()
    before = model.bottom_up(x)
    with torch.no_grad():  # the variance half of head 0 cannot reach layer 1 when only the mean goes up
        model.enc_heads[0].net[0].weight[64:] += 1.0
    after = model.bottom_up(x)
    assert torch.equal(before[1].mu, after[1].mu) and not torch.equal(before[0].logvar, after[0].logvar)
    features = build_model("lvae", small_paper(ladder_up="features"))
    assert features.up[1][0].in_features == 512


def test_a_separate_inference_path_changes_q_and_leaves_the_prior_alone():
    torch.manual_seed(0)
    model = build_model("lvae", small_paper(ladder_inference="separate")).eval()
    assert isinstance(model, LadderVAE) and len(model.inf_down) == len(model.inf_heads) == 2
    x = torch.rand(4, 1, 28, 28).bernoulli()
    torch.manual_seed(1)
    out = model(x)
    with torch.no_grad():
        for p in model.inf_heads.parameters():
            p.add_(0.5)
    torch.manual_seed(1)
    moved = model(x)
    assert torch.equal(out.latents[-1].z, moved.latents[-1].z)  # the top is the encoder's own
    assert not torch.allclose(out.latents[1].q.mu, moved.latents[1].q.mu)  # the merge uses the inference path
    assert torch.equal(out.latents[1].p.mu, moved.latents[1].p.mu)  # the prior is the generative path's
    shared = build_model("lvae", small_paper(ladder_inference="shared"))
    assert not hasattr(shared, "inf_heads")
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in shared.parameters())


def test_heads_get_batch_norm_before_the_softplus():
    head = build_model("hvae", small_paper(head_batch_norm=True)).enc_heads[0]
    assert [type(m).__name__ for m in head.net] == ["Linear", "BatchNorm1d", "Unflatten"]
    plain = build_model("hvae", small_paper(head_batch_norm=False)).enc_heads[0]
    assert not batch_norm_layers(plain)


@pytest.mark.slow
def test_batch_norm_statistics_are_recomputed_from_the_data_without_touching_training_randomness():
    torch.manual_seed(0)
    model = build_model("lvae", small_paper())
    images = synthetic_split(300, 0).images
    state = torch.get_rng_state()
    assert recompute_batch_norm(model, images, "bernoulli", seed=3, batch_size=100) == len(batch_norm_layers(model))
    assert torch.equal(torch.get_rng_state(), state)
    first = model.up[0][2]  # (Flatten, Linear, BatchNorm1d, ...): the first batch norm sees the binarized images through one linear layer: its mean is exact
    x = torch.bernoulli(images, generator=torch.Generator().manual_seed(3)).flatten(1)
    with torch.no_grad():
        expected = model.up[0][1](x).mean(0)
    assert torch.allclose(first.running_mean, expected, atol=1e-5)
    assert first.momentum == 0.1 and model.training  # the layers and the mode are as they were
    again = copy.deepcopy(model)
    recompute_batch_norm(again, images, "bernoulli", seed=3, batch_size=100)
    assert torch.equal(again.up[2][1].running_var, model.up[2][1].running_var)  # seeded: the same statistics twice


def _trainer(tmp_path: Path, **train) -> Trainer:
    cfg = paper_config()
    cfg.model.layers = cfg.model.layers[:2]
    cfg.train.batch_size, cfg.train.epochs = 32, 1
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return Trainer(cfg, tmp_path / "run", synthetic_split(64, 0), synthetic_split(32, 1), progress=False)


def test_the_optimizer_and_the_gradient_clipping_are_the_paper_codes(tmp_path):
    t = _trainer(tmp_path, grad_clip_value=1e-3)
    assert t.optimizer.param_groups[0]["eps"] == 1e-4
    seen = []
    step = t.optimizer.step
    t.optimizer.step = lambda: (seen.append(max(p.grad.abs().max().item() for p in t.model.parameters() if p.grad is not None)), step())[1]
    row, _ = t.step(synthetic_split(32, 2).images, False)
    assert row["grad_norm"] > 1e-2 and seen == [pytest.approx(1e-3)]  # clipped element by element after the norm clip


@pytest.mark.slow
def test_kept_epochs_are_written_and_a_missing_one_is_named(tmp_path):
    t = _trainer(tmp_path, epochs=2, keep_epochs=(1,), bn_recompute=True)
    t.fit()
    cfg, model = ckpt.load_run(tmp_path / "run", epoch=1)
    _, last = ckpt.load_run(tmp_path / "run")
    assert cfg.train.keep_epochs == (1,)
    assert not torch.equal(model.up[0][1].weight, last.up[0][1].weight)
    with pytest.raises(ckpt.CheckpointError, match=r"kept no weights at epoch 2; it kept epochs \[1\]"):
        ckpt.load_run(tmp_path / "run", epoch=2)


def test_the_first_setup_still_loads_as_it_was_trained():
    old = named_config("paper").to_dict()
    for section, fields in (("model", FIRST_SETUP_MODEL), ("train", FIRST_SETUP_TRAIN)):
        for key in fields:
            old[section].pop(key)
    old["train"].pop("keep_epochs")
    cfg = RunConfig.from_dict(old)  # a config.json written before these fields existed
    assert all(getattr(cfg.model, k) == v for k, v in FIRST_SETUP_MODEL.items())
    assert all(getattr(cfg.train, k) == v for k, v in FIRST_SETUP_TRAIN.items())
    first = named_config("paper-best-v1")  # results/paper-best-v1.json was trained on the first setup, and its recipe stays so
    assert (first.model.ladder_up, first.model.ladder_inference, first.train.adam_eps) == ("features", "shared", 1e-8)
    best = named_config("paper-best")  # the current recipe starts from the paper code's setup
    assert (best.model.ladder_up, best.model.ladder_inference, best.train.adam_eps) == ("mean", "separate", 1e-4)


@pytest.mark.parametrize("name", ["seed-lvae.pt", "paper-v1/headline-lvae-bn-wu.pt"])
def test_committed_weights_of_the_first_setup_load(name):
    from lvae.results import load_model

    cfg, model = load_model(RESULTS / name)
    assert cfg.model.leaky_slope == 0.1 and not cfg.model.head_batch_norm
    assert model(torch.zeros(2, 1, 28, 28)).x_logits.shape == (2, 1, 28, 28)
