"""Fast checks of the operations pieces that need no server: fingerprint, prefect.yaml, stack record."""

from __future__ import annotations

from pathlib import Path

import yaml

from flows import stack as local_stack
from modelmill.config import Settings
from tasks.reuse import code_version, fingerprint_cache_key, run_fingerprint

REPO = Path(__file__).resolve().parents[2]


def test_fingerprint_changes_with_data_config_and_code_not_with_ops(tmp_path):
    settings = Settings()
    base = run_fingerprint(str(tmp_path), settings, "abc.dir", "code1")
    assert base == run_fingerprint(str(tmp_path), settings, "abc.dir", "code1")
    assert base != run_fingerprint(str(tmp_path), settings, "abd.dir", "code1")
    assert base != run_fingerprint(str(tmp_path), settings, "abc.dir", "code2")
    assert base != run_fingerprint(str(tmp_path), settings.override({"train.seed": 7}), "abc.dir", "code1")
    assert base != run_fingerprint(str(tmp_path / "other"), settings, "abc.dir", "code1")
    ops_only = settings.override({"ops.timezone": "Europe/Paris", "ops.alert_webhook_url": "http://x"})
    assert base == run_fingerprint(str(tmp_path), ops_only, "abc.dir", "code1")
    assert fingerprint_cache_key(None, {"fingerprint": base}) == f"retrain-{base}"


def test_code_version_is_stable_and_hex():
    assert code_version() == code_version() and len(code_version()) == 16
    int(code_version(), 16)


def test_prefect_yaml_declares_the_deployments_on_the_process_pool():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"nightly-retrain", "retrain", "tune", "import-labels", "compress"}
    assert spec["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $MODELMILL_ROOT }}"}}
    ]
    assert all(d["work_pool"]["name"] == local_stack.WORK_POOL for d in deployments.values())
    nightly = deployments["nightly-retrain"]
    assert nightly["schedules"][0]["cron"] == "0 2 * * *"
    assert nightly["concurrency_limit"]["limit"] == 1
    assert deployments["retrain"]["entrypoint"] == "flows/retrain.py:retrain"


def test_deployable_skips_missing_entrypoints(tmp_path):
    (tmp_path / "prefect.yaml").write_text((REPO / "prefect.yaml").read_text())
    assert local_stack.deployable(tmp_path) == []
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "retrain.py").write_text("")
    assert local_stack.deployable(tmp_path) == ["nightly-retrain", "retrain"]


def test_down_without_a_stack_stops_nothing(tmp_path):
    assert local_stack.down(tmp_path) == []
    assert local_stack.load_stack(tmp_path) is None
