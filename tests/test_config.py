import json

import pytest

from lvae.config import ConfigError, RunConfig, paper_config, seed_config, with_overrides


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
