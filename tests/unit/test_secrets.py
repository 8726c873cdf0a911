"""Secrets in the settings: SecretStr, one masking for params/logs/fingerprint, clear only on handoff."""

import pytest

from modelmill.config import Settings, load_settings
from modelmill.secrets import mask_bearer_url, mask_url, redact, without_userinfo

PASSWORD, TOKEN, HOOK = "pw-Zq81xK", "tok-4471aa", "T0/B0/hook-secret-77"
PLANTED = {
    "tune.storage": f"postgresql+psycopg2://bob:{PASSWORD}@db.internal:5432/optuna",
    "tracking.uri": f"https://alice:{PASSWORD}@mlflow.internal/?token={TOKEN}",
    "ops.alert_webhook_url": f"https://hooks.example.com/services/{HOOK}",
}


@pytest.fixture
def settings() -> Settings:
    return load_settings(None, PLANTED)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///optuna/optuna.db", "sqlite:///optuna/optuna.db"),
        ("https://h/x?api_key=abc&x=1", "https://h/x?api_key=***&x=***"),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_a_webhook_keeps_only_its_host():
    assert mask_bearer_url(PLANTED["ops.alert_webhook_url"]) == "https://hooks.example.com/***"
    assert without_userinfo("http://a:b@h:5000/x") == "http://h:5000/x"


def test_flat_params_repr_and_json_show_no_secret(settings):
    shown = [str(settings.flat()), repr(settings), settings.model_dump_json(), str(settings.model_dump())]
    for text in shown:
        assert PASSWORD not in text and TOKEN not in text and HOOK not in text
    assert settings.flat()["tune.storage"] == "postgresql+psycopg2://bob:***@db.internal:5432/optuna"


def test_overrides_and_worker_handoff_keep_the_secrets_in_clear(settings):
    again = settings.override({"train.epochs": 3})
    assert again.tune.storage.get_secret_value() == PLANTED["tune.storage"]
    handed = Settings.model_validate_json(settings.private_json())
    assert handed.ops.alert_webhook_url.get_secret_value() == PLANTED["ops.alert_webhook_url"]


def test_redact_masks_every_fragment_in_free_text(settings):
    text = f"cannot connect {PLANTED['tune.storage']} (password {PASSWORD}); hook {HOOK}; t={TOKEN}"
    out = settings.redact(text)
    assert PASSWORD not in out and HOOK not in out and TOKEN not in out
    assert (
        redact("sqlite:///optuna/optuna.db", ["sqlite:///optuna/optuna.db"]) == "sqlite:///optuna/optuna.db"
    )


def test_the_run_fingerprint_hashes_the_masked_form(settings):
    from tasks.reuse import run_fingerprint

    other = settings.override({"tune.storage": PLANTED["tune.storage"].replace(PASSWORD, "rotated")})
    assert run_fingerprint(settings, "v1", "c") == run_fingerprint(other, "v1", "c")
    wider = settings.override({"train.epochs": 7})
    assert run_fingerprint(settings, "v1", "c") != run_fingerprint(wider, "v1", "c")
