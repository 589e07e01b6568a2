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
    with pytest.raises(SystemExit) as refused:  # refused while the flags are parsed (lvae.flags)
        factors.main([*argv[:3], "--jobs", "0"])
    assert refused.value.code == 2


# ----------------------------------------------------------------------------- the study's effects, on made-up runs


def _runs_with_known_changes(ladder_shift: dict[str, float], vae_shift: dict[str, float], seeds=(0, 1, 2), n=400):
    """Baseline runs with random per-image log p(x), and every arm's runs shifted by a known amount per image plus
    seed noise that is the same for the arm's ladder and VAE (so the gap change is known exactly)."""
    import random

    from lvae.experiments import factor_effects as fe

    rng = random.Random(0)
    base, arms = {}, {}
    for s in seeds:
        for v in (fe.LADDER, fe.VAE):
            base[fe.baseline_name(v, s)] = {"name": f"b{v}{s}", "per_image_log_px": [rng.gauss(-85, 20) for _ in range(n)]}
        for f in fe.FACTORS:
            noise = [rng.gauss(0, 0.3) for _ in range(n)]
            for v, shift in ((fe.LADDER, ladder_shift.get(f.key, 0.0)), (fe.VAE, vae_shift.get(f.key, 0.0))):
                if v == fe.VAE and f.ladder_only:
                    continue
                b = base[fe.baseline_name(v, s)]["per_image_log_px"]
                arms[fe.experiment_name(f, v, s)] = {"name": "a", "per_image_log_px": [x - shift - e for x, e in zip(b, noise)]}
    return arms, base


def test_the_study_recovers_known_changes_and_judges_the_gap():
    from lvae.experiments import factor_effects as fe

    ladder = {"head-bn": 0.8, "var-floor": 0.1, "ladder-up": 0.5, "all-eight": 1.2}
    vae = {"head-bn": 0.3, "var-floor": 0.1, "leaky-slope": 0.6, "all-eight": 0.2}
    arms, base = _runs_with_known_changes(ladder, vae)
    by_key = {a.factor.key: a for a in (fe.arm_effect(f, arms, base) for f in fe.FACTORS)}
    head = by_key["head-bn"]
    # each model's change carries the seed noise; the gap change (the noise shared by both models) cancels it exactly
    assert head.ladder.mean == pytest.approx(0.8, abs=0.1) and head.vae.mean == pytest.approx(0.3, abs=0.1)
    assert head.ladder.low < 0.8 < head.ladder.high
    assert head.gap.mean == pytest.approx(0.5, abs=1e-9) and head.judged == fe.CARRIES
    assert by_key["var-floor"].gap.mean == pytest.approx(0.0, abs=1e-9) and by_key["var-floor"].judged == fe.NO_DIFFERENCE
    assert by_key["leaky-slope"].judged == fe.AGAINST  # the VAE got worse, the ladder did not: the gap widened
    up = by_key["ladder-up"]
    assert up.vae is None and up.gap.mean == up.ladder.mean == pytest.approx(0.5, abs=0.1)  # ladder-only: gap change = ladder change
    joint, summed, inter = fe.interaction(arms, base)
    assert joint.mean == pytest.approx(1.0, abs=1e-9)
    assert summed.mean == pytest.approx(sum(by_key[f.key].gap.mean for f in fe.DETAILS), abs=1e-9)
    assert summed.mean == pytest.approx(0.5 + 0.5 + 0.0 - 0.6, abs=0.1)  # head-bn, ladder-up, var-floor, leaky-slope
    assert inter.mean == pytest.approx(joint.mean - summed.mean, abs=1e-9)
    measured, verdict_text = fe.claim_text(list(by_key.values()), (joint, summed, inter))
    assert "carries part of the gap: details 1, 3" in verdict_text and "works against the gap: detail 8" in verdict_text


def test_an_arm_without_all_its_runs_is_not_measured_and_the_joint_waits_for_every_arm():
    from lvae.experiments import factor_effects as fe

    arms, base = _runs_with_known_changes({"head-bn": 0.8}, {})
    del arms[fe.experiment_name(fe.DETAILS[2], fe.VAE, 1)]  # head-bn's VAE at seed 1: that seed is left out, not half-paired
    head = fe.arm_effect(fe.DETAILS[2], arms, base)
    assert head.seeds == (0, 2) and head.judged.startswith("not measured yet")
    assert fe.interaction(arms, base)[0].seeds == 2
    assert fe.arm_effect(fe.DETAILS[2], {}, base).judged.startswith("not measured yet")
