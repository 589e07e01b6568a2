"""The factor study: its arms are the first setup's choices, one at a time; the merge arms are real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import dense_config
from lvae.cli import build_parser, config_from_args
from lvae.config import FIRST_SETUP_MODEL, FIRST_SETUP_TRAIN, ConfigError, with_first_setup, named_config
from lvae.experiments import factors
from lvae.losses import compute_loss
from lvae.model import LadderVAE, build_model


def config_of(exp):
    return config_from_args(build_parser().parse_args(exp.train_argv(Path("unused"))))


def test_each_detail_arm_changes_exactly_its_fields_to_the_first_setup():
    base = config_of(factors.paper.Experiment("b", "factor", "lvae-bn-wu", 5, factors.paper.SWEEP))
    first = with_first_setup(config_of(factors.paper.Experiment("b", "factor", "lvae-bn-wu", 5, factors.paper.SWEEP)))
    fields = [f"model.{k}" for k in FIRST_SETUP_MODEL] + [f"train.{k}" for k in FIRST_SETUP_TRAIN]

    def get(cfg, path):
        section, key = path.split(".")
        return getattr(getattr(cfg, section), key)

    changed_by = {}
    for factor in factors.DETAILS:
        exp = next(e for e in factors.experiments() if e.name == factors.experiment_name(factor, "lvae-bn-wu", 0))
        cfg = config_of(exp)
        changed = [f for f in fields if get(cfg, f) != get(base, f)]
        assert changed and all(get(cfg, f) == get(first, f) for f in changed), factor.key
        changed_by[factor.key] = changed
    # together the eight details are every field that differs between the two setups, each in one arm
    assert sorted(f for c in changed_by.values() for f in c) == sorted(f for f in fields if get(first, f) != get(base, f))
    joint = config_of(next(e for e in factors.experiments() if e.name == "factor-all-eight-lvae-bn-wu-s0"))
    assert all(get(joint, f) == get(first, f) for f in fields)


def test_ladder_only_arms_train_the_ladder_only_and_the_rest_train_both():
    runs = factors.experiments()
    variants = {f.key: {e.variant for e in runs if e.name.startswith(f"factor-{f.key}-")} for f in factors.FACTORS}
    for key in ("ladder-up", "ladder-inference", "merge-concat", "merge-none"):
        assert variants[key] == {"lvae-bn-wu"}
    for key in ("head-bn", "var-floor", "clipping", "adam-eps", "bn-stats", "leaky-slope", "all-eight"):
        assert variants[key] == {"lvae-bn-wu", "vae-bn-wu"}
    assert len(runs) == 3 * (4 + 2 * 7) and len({e.name for e in runs}) == len(runs)
    # the VAE of the joint arm is given no ladder setting (it would be refused)
    vae = config_of(next(e for e in runs if e.name == "factor-all-eight-vae-bn-wu-s0"))
    assert vae.model_kind == "hvae" and vae.model.head_batch_norm is False


@pytest.mark.parametrize("merge", ["concat", "bottom-up"])
def test_the_merge_arms_build_train_and_use_what_they_say(merge):
    cfg = dense_config(3, batch_norm=True)
    cfg.ladder_up, cfg.ladder_inference, cfg.ladder_merge = "mean", "separate", merge  # as the study trains them
    model = build_model("lvae", cfg).train()
    x = torch.rand(16, 1, 28, 28).bernoulli()
    out = model(x, repeats=2)
    assert out.x_logits.shape[0] == 32
    loss = compute_loss(out, x.repeat_interleave(2, 0), "bernoulli", 1.0).loss
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []  # no parameter built that the arm never uses
    model.eval()
    encoder = model.bottom_up(x)
    below = model(x).latents[0]
    if merge == "bottom-up":  # q is the encoder's own Gaussian: no top-down information in it
        assert torch.equal(below.q.mu, encoder[0].mu) and not hasattr(model, "inf_heads")
    else:  # q depends on the sample above: two passes with different noise give different q at the bottom
        assert not torch.equal(model(x).latents[0].q.mu, below.q.mu)


def test_ladder_flags_are_refused_for_a_model_without_a_ladder():
    with pytest.raises(ConfigError, match="ladder"):
        config_from_args(build_parser().parse_args(["train", "--config", "paper", "--model", "hvae", "--ladder-up", "mean"]))
    with pytest.raises(ConfigError, match="ladder"):
        config_from_args(build_parser().parse_args(["train", "--config", "paper", "--model", "hvae", "--set", "model.ladder_merge=concat"]))


@pytest.mark.parametrize("text, message", [("model.var_floor", "FIELD=VALUE"), ("model.nope=1", "no setting"),
                                           ("model.ladder_merge=sum", "choose one of"), ("train.bn_recompute=yes", "true or false"),
                                           ("train.epochs=1.5", "not an integer"), ("train.lr=none", "cannot be unset"),
                                           ("nope.x=1", "not a section")])
def test_a_bad_setting_is_refused_with_what_to_write(text, message):
    with pytest.raises(ConfigError, match=message):
        config_from_args(build_parser().parse_args(["train", "--config", "paper", "--set", text]))


@pytest.mark.slow
def test_a_smoke_study_trains_an_arm_and_records_its_settings(tiny_data, tmp_path):
    argv = ["--only", "factor-merge-none-lvae-bn-wu-s0", "factor-clipping-vae-bn-wu-s0", "--epochs", "1", "--iw-samples", "2",
            "--data-root", str(tiny_data), "--limit", "128", "--batch-size", "64", "--runs", str(tmp_path / "runs"),
            "--results", str(tmp_path / "res"), "--no-estimate", "--jobs", "1"]
    assert factors.main(argv) == 0
    r = json.loads((tmp_path / "res" / "factor-clipping-vae-bn-wu-s0.json").read_text())
    assert r["settings"] == ["train.grad_clip=none", "train.grad_clip_value=none"] and r["uninterrupted"]
    assert "--set train.grad_clip=none" in r["commands"][0]
    cfg = json.loads((tmp_path / "runs" / "factor-clipping-vae-bn-wu-s0" / "config.json").read_text())
    assert cfg["train"]["grad_clip"] is None and cfg["model_kind"] == "hvae"
    assert factors.main([*argv[:3], "--jobs", "0"]) == 2
