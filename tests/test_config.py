import json
from pathlib import Path

import pytest

from lvae.checkpoint import config_differences
from lvae.cli import FIXED_ON_FINETUNE, FIXED_ON_RESUME, RESUME_FLAGS, build_parser, config_from_args, dest
from lvae.config import (WARMUP_FLAGS, ConfigError, RunConfig, config_flags, get, paper_config, put, seed_config, settings, validate,
                         with_overrides)
from lvae.recipes import NAMED_CONFIGS, named_config
from lvae.runstate import RESUMABLE_FIELDS


def test_configs_round_trip_through_json(tmp_path):
    for cfg in (seed_config(), paper_config()):
        cfg.save(tmp_path / "c.json")
        back = RunConfig.load(tmp_path / "c.json")
        assert json.loads(json.dumps(back.to_dict())) == json.loads(json.dumps(cfg.to_dict()))


def test_with_overrides_sets_dotted_fields_and_validates():
    cfg = with_overrides(seed_config(), {"train.epochs": 10, "objective.beta.end": 1.0})
    assert cfg.train.epochs == 10 and cfg.objective.beta.end == 1.0
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):
        with_overrides(seed_config(), {"train.epochs": 0})


# ----------------------------------------------------------------------------- recipes and flags, declared once

RECORDED = Path(__file__).with_name("named_configs.json")  # every recipe's to_dict() as lvae.config built it at cd85fd9


def parse(*argv: str):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_every_recipe_is_the_config_it_was_before_it_became_a_list_of_differences():
    recorded = json.loads(RECORDED.read_text())
    assert sorted(recorded) == sorted(NAMED_CONFIGS)
    for name, expected in recorded.items():
        assert json.loads(json.dumps(named_config(name).to_dict())) == expected, name
        validate(named_config(name))


def example(s):
    """A valid value of setting `s` other than its default, and the argv that sets it."""
    if s.kind is bool:
        return True, [s.meta["flag"]]
    if s.choices:
        return s.choices[-1], [s.meta["flag"], s.choices[-1]]
    if s.kind == tuple[int, ...]:
        return (2, 3), [s.meta["flag"], "2", "3"]
    value = {int: 2, float: 0.5, str: "cpu"}[s.kind]
    return value, [s.meta["flag"], str(value)]


@pytest.mark.parametrize("s", config_flags(), ids=lambda s: s.meta["flag"])
def test_each_flag_sets_the_field_it_is_declared_beside_and_nothing_else(s):
    base = named_config("paper")
    value, argv = example(s)
    if s.path == "train.lr_min":
        argv += ["--lr-schedule", "cosine"]
    cfg = parse("--config", "paper", *argv)
    changed = set(config_differences(json.loads(json.dumps(base.to_dict())), json.loads(json.dumps(cfg.to_dict()))))
    expected = {s.path} if value != get(base, s.path) else set()  # the example may be the recipe's own value
    expected |= {"name"} if s.path == "model_kind" else {"train.lr_schedule"} if s.path == "train.lr_min" else set()
    assert changed == expected


@pytest.mark.parametrize("s", [s for s in settings() if s.choices], ids=lambda s: s.path)
def test_a_choice_outside_the_fields_literal_type_is_refused(s):
    cfg = named_config("seed")
    put(cfg, s.path, "nope")
    with pytest.raises(ConfigError, match=r"unknown .* 'nope'; choose one of \("):
        validate(cfg)


def test_the_warmup_flags_name_their_unit_and_the_old_one_says_which_it_meant(capsys):
    for recipe in ("seed", "paper"):
        for flag, kind in WARMUP_FLAGS.items():
            beta = parse("--config", recipe, flag, "7").objective.beta
            assert (beta.kind, beta.steps) == (kind, 7)
        capsys.readouterr()
        old = parse("--config", recipe, "--warmup", "7")
        unit = "--warmup-iterations" if recipe == "seed" else "--warmup-epochs"  # as the recipe's schedule counts
        assert old.to_dict() == parse("--config", recipe, unit, "7").to_dict()
        [notice] = capsys.readouterr().err.strip().splitlines()
        assert notice.startswith("note: --warmup is ") and f"write {unit} 7" in notice
    with pytest.raises(ConfigError, match="--beta-schedule linear_iter asks for another"):
        parse("--config", "paper", "--warmup-epochs", "3", "--beta-schedule", "linear_iter")
    with pytest.raises(ConfigError, match="drop it"):
        parse("--config", "paper", "--warmup", "3", "--beta-schedule", "constant")


def test_resume_and_finetune_flag_lists_come_from_the_declarations():
    flags = {dest(s.meta["flag"]): s.path for s in config_flags()}
    assert {flags[n] for n in RESUME_FLAGS} == set(RESUMABLE_FIELDS)
    assert set(flags) <= set(RESUME_FLAGS) | set(FIXED_ON_RESUME)
    assert {flags[n] for n in FIXED_ON_FINETUNE if n in flags} == {
        s.path for s in config_flags() if s.path.startswith("model") or s.path in ("train.dataset", "train.limit")}


def test_set_reaches_every_field_a_flag_does_not():
    cfg = parse("--config", "paper", "--set", "train.adam_eps=1e-6", "--set", "objective.beta.start=0.1",
                "--set", "model.head_batch_norm=false", "--set", "train.grad_clip_value=none")
    assert (cfg.train.adam_eps, cfg.objective.beta.start, cfg.model.head_batch_norm, cfg.train.grad_clip_value) == (1e-6, 0.1, False, None)
