from pathlib import Path

import pytest

from modelmill.config import Settings, load_settings
from modelmill.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_repo_params_yaml_is_valid_and_matches_the_defaults():
    assert load_settings(REPO / "params.yaml") == Settings()


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"params.yaml: train.epochz: Extra inputs"):
        load_settings(path)


def test_wrong_type_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  learning_rate: fast\n")
    with pytest.raises(ConfigError, match=r"train.learning_rate"):
        load_settings(path)


def test_overrides_apply_and_unknown_override_fails():
    settings = load_settings(None, {"train.epochs": 3, "gate.tolerance": None})
    assert settings.train.epochs == 3 and settings.gate.tolerance == Settings().gate.tolerance
    with pytest.raises(ConfigError, match="train.nope"):
        load_settings(None, {"train.nope": 1})
    with pytest.raises(ConfigError, match="train.epochs"):
        load_settings(None, {"train.epochs": 0})


def test_file_store_uri_is_refused():
    with pytest.raises(ConfigError, match="tracking.uri"):
        load_settings(None, {"tracking.uri": "file:./mlruns"})


def test_flat_params_are_dotted():
    flat = Settings().flat()
    assert flat["train.epochs"] == 30 and flat["registry.model_name"] == "digits-classifier"
