"""The moving average of the weights (`train.ema_decay`): its arithmetic, what the run scores and
saves with it, and that leaving it off changes nothing."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from lvae import checkpoint as ckpt
from lvae.batchnorm import recompute_batch_norm
from lvae.config import ConfigError, paper_config, seed_config, validate
from lvae.data import load_split
from lvae.training import Trainer, moving_average
from lvae.weights import load_trained
from conftest import dense_config

CHECKPOINT_KEYS = {"config", "model", "optimizer", "state", "rng", "data"}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def trainer(run: Path, tiny_data: Path, cfg=None, **train) -> Trainer:
    if cfg is None:
        cfg = seed_config()
        cfg.model = dense_config(2, likelihood="bernoulli", batch_norm=True)
    cfg.train.batch_size, cfg.train.epochs = 64, 1
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return Trainer(cfg, run, load_split("mnist", "train", tiny_data), load_split("mnist", "test", tiny_data), progress=False)


def test_the_average_of_three_weights_is_the_known_answer():
    """decay 0.5 over weights 1, 2, 3: the first update copies 1, then 1.5, then 2.25 (= .25*1 + .25*2 + .5*3)."""
    layer = nn.BatchNorm1d(1)
    ema = moving_average(layer, 0.5)
    for w in (1.0, 2.0, 3.0):
        layer.weight.data.fill_(w)
        layer.running_mean.fill_(10 * w)  # a buffer: averaged as well
        ema.update_parameters(layer)
    assert ema.module.weight.item() == 2.25 and ema.module.running_mean.item() == 22.5
    assert layer.weight.item() == 3.0  # the trained weights are left alone


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5, float("nan"), True, "0.9"])
def test_a_decay_outside_zero_to_one_is_refused(decay):
    cfg = seed_config()
    cfg.train.ema_decay = decay
    with pytest.raises(ConfigError, match="ema_decay must lie strictly between 0 and 1"):
        validate(cfg)


@pytest.mark.slow
def test_the_saved_model_is_the_closed_form_average_of_every_step(tmp_path, tiny_data):
    """4 steps at decay 0.8: EMA = .8^3 w1 + .2 .8^2 w2 + .2 .8 w3 + .2 w4, parameters and batch-norm buffers alike."""
    d = 0.8
    t = trainer(tmp_path / "run", tiny_data, ema_decay=d)  # 256 images, batch 64: 4 steps
    steps, opt_step = [], t.optimizer.step
    t.optimizer.step = lambda: (opt_step(), steps.append(copy.deepcopy(t.model.state_dict())))[0]
    t.fit()
    assert len(steps) == 4
    weights = [d ** 3, (1 - d) * d ** 2, (1 - d) * d, 1 - d]
    sd = torch.load(tmp_path / "run" / ckpt.LATEST, weights_only=True)
    assert sd["ema"]["n_averaged"].item() == 4
    averaged = 0
    for name, saved in sd["model"].items():
        assert torch.equal(sd["raw_model"][name], steps[-1][name])  # training continues from the last step's weights
        if saved.is_floating_point() and "running" not in name:  # recompute_batch_norm resets the running statistics
            by_hand = sum(w * s[name].double() for w, s in zip(weights, steps))
            torch.testing.assert_close(saved.double(), by_hand, rtol=1e-5, atol=1e-6)
            averaged += not torch.allclose(saved, steps[-1][name])
    assert averaged > 5  # the average is not the last step's weights


def test_batch_norm_buffers_are_averaged_when_not_recomputed(tmp_path, tiny_data):
    d = 0.8
    t = trainer(tmp_path / "run", tiny_data, ema_decay=d, bn_recompute=False)
    steps, opt_step = [], t.optimizer.step
    t.optimizer.step = lambda: (opt_step(), steps.append(copy.deepcopy(t.model.state_dict())))[0]
    t.fit()
    weights = [d ** 3, (1 - d) * d ** 2, (1 - d) * d, 1 - d]
    names = [n for n in t.eval_model.state_dict() if "running_mean" in n or "running_var" in n]
    assert names
    for name in names:  # the raw model's buffers move in the forward pass, before the step that records them
        by_hand = sum(w * s[name].double() for w, s in zip(weights, steps))
        torch.testing.assert_close(t.eval_model.state_dict()[name].double(), by_hand, rtol=1e-5, atol=1e-6)


def spy_on_evaluation(monkeypatch) -> dict[str, list[nn.Module]]:
    """The models the trainer recomputes batch-norm statistics on and scores, call by call."""
    import lvae.training

    seen: dict[str, list[nn.Module]] = {"recompute": [], "elbo": []}
    for name, key in (("recompute_batch_norm", "recompute"), ("split_elbo", "elbo")):
        real = getattr(lvae.training, name)
        monkeypatch.setattr(lvae.training, name, lambda model, *a, real=real, key=key, **k: (seen[key].append(model), real(model, *a, **k))[1])
    return seen


@pytest.mark.slow
def test_evaluation_and_every_saved_model_use_the_average(tmp_path, tiny_data, monkeypatch):
    """The paper config recomputes batch-norm statistics before testing: on the average, not the raw weights."""
    run, seen = tmp_path / "run", spy_on_evaluation(monkeypatch)
    t = trainer(run, tiny_data, cfg=paper_config(), ema_decay=0.9, keep_epochs=(1,))
    t.fit()
    ema, raw = t.eval_model, t.model
    assert ema is t.ema.module and ema is not raw
    assert seen["recompute"] == [ema] and seen["elbo"] == [ema]
    again = copy.deepcopy(ema)  # the statistics the average holds are those recomputed for its own weights
    recompute_batch_norm(again, t.train_split.images, "bernoulli", seed=t.cfg.train.seed + 7919)
    for (name, a), b in zip(ema.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    for source in (run, ckpt.epoch_weights(run, 1)):  # what `evaluate` and `sample` load
        _, model = load_trained(source)
        for name, value in model.state_dict().items():
            assert torch.equal(value, ema.state_dict()[name]), (source, name)
        params = dict(raw.named_parameters())
        moved = [n for n, p in params.items() if not torch.equal(model.state_dict()[n], p)]
        assert len(moved) > len(params) / 2  # and they are not the raw weights (a bias before batch norm never moves)


def test_without_ema_the_checkpoint_and_evaluation_are_the_raw_weights(tmp_path, tiny_data, monkeypatch):
    """(Checked by hand when this was added: the paper config's weights and logs on this data, bit for bit as before.)"""
    run, seen = tmp_path / "run", spy_on_evaluation(monkeypatch)
    t = trainer(run, tiny_data, bn_recompute=True)
    t.fit()
    assert t.ema is None and t.eval_model is t.model
    sd = torch.load(run / ckpt.LATEST, weights_only=True)
    assert set(sd) - {"digest"} == CHECKPOINT_KEYS  # no raw_model, no ema: the old layout
    for name, value in t.model.state_dict().items():
        assert torch.equal(sd["model"][name], value)
    assert seen["recompute"] == [t.model] and seen["elbo"] == [t.model]
