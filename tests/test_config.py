"""Config validation: clear messages for unknown keys and bad values; dotted overrides."""

import pytest

from losslab.runs.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_to_dict,
    load_config,
    parse_overrides,
    validate_config,
)


def test_defaults_validate_and_round_trip():
    config = load_config()
    assert isinstance(config, TrainConfig)
    assert config.data.name == "digits" and config.model.name == "small_cnn"
    again = validate_config(config_to_dict(config))
    assert config_to_dict(again) == config_to_dict(config)


def test_dotted_overrides_are_parsed_as_yaml():
    overrides = parse_overrides(["optimizer.lr=0.2", "epochs=3", "checkpoints.epochs=[1, 2]",
                                 "data.augment.flip=true", "model.options.width=8"])
    assert overrides == {"optimizer.lr": 0.2, "epochs": 3, "checkpoints.epochs": [1, 2],
                         "data.augment.flip": True, "model.options.width": 8}
    config = load_config(overrides=overrides)
    assert config.optimizer.lr == 0.2 and config.epochs == 3
    assert config.checkpoints.epochs == [1, 2] and config.data.augment.flip is True
    assert config.model.options == {"width": 8}


def test_override_without_equals_is_refused():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["optimizer.lr"])


def test_override_through_a_value_is_refused():
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"epochs": 3}, {"epochs.x": 1})


def test_unknown_top_level_key_names_it_and_suggests():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["epoch=3"])
    msg = str(e.value)
    assert "unknown key 'epoch'" in msg and "did you mean 'epochs'" in msg
    assert "valid keys here" in msg and "seed" in msg


def test_unknown_nested_key_lists_the_sections_keys():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["optimizer.momentun=0.5"])
    msg = str(e.value)
    assert "'optimizer.momentun'" in msg and "'momentum'" in msg and "weight_decay" in msg


def test_bad_value_names_key_value_and_allowed():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["optimizer.name=rmsprop"])
    msg = str(e.value)
    assert "optimizer.name" in msg and "rmsprop" in msg and "'sgd'" in msg
    with pytest.raises(ConfigError, match="optimizer.lr"):
        load_config(overrides=["optimizer.lr=-1"])
    with pytest.raises(ConfigError, match="epochs"):
        load_config(overrides=["epochs=many"])


def test_schedule_name_and_params_are_validated():
    config = load_config(overrides=["schedule.name=cosine_restarts", "schedule.T_0=5"])
    assert config.schedule.params == {"T_0": 5}
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["schedule.name=cosin"])
    assert "unknown schedule 'cosin'" in str(e.value) and "'cosine'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["schedule.name=step", "schedule.step_sise=3"])
    assert "'step_sise'" in str(e.value) and "step_size" in str(e.value)


def test_yaml_file_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 4\noptimizer:\n  lr: 0.3\n")
    config = load_config(path, ["epochs=2"])
    assert config.epochs == 2 and config.optimizer.lr == 0.3


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_missing_required_schedule_param_is_named():
    with pytest.raises(ConfigError, match="T_0"):
        load_config(overrides=["schedule.name=cosine_restarts"])
