"""Fast checks of the operations pieces that need no server: fingerprint, prefect.yaml, stack record."""

from __future__ import annotations

from pathlib import Path

import yaml

from flows import stack as local_stack
from modelmill.config import Settings
from tasks.reuse import code_version, run_fingerprint

REPO = Path(__file__).resolve().parents[2]


def test_fingerprint_covers_outcome_settings_data_code_and_libraries_only(monkeypatch):
    from tasks import reuse

    settings = Settings()
    base = run_fingerprint(settings, "abc.dir", "code1")
    assert base != run_fingerprint(settings, "abd.dir", "code1")
    assert base != run_fingerprint(settings, "abc.dir", "code2")
    for changed in ({"train.seed": 7}, {"model.width": 16}, {"split.salt": "x"}, {"gate.tolerance": 0.1},
                    {"compress.budget_points": 2.0}):  # fmt: skip
        assert base != run_fingerprint(settings.override(changed), "abc.dir", "code1"), changed
    not_outcome = settings.override({
        "ops.timezone": "Europe/Paris", "ops.alert_webhook_url": "http://x", "labels.export_count": 7,
        "compress.latency_repeats": 3, "compress.threads": 2, "tune.trials": 3, "data.push": False,
    })  # fmt: skip
    assert base == run_fingerprint(not_outcome, "abc.dir", "code1")
    versions = reuse.library_versions()
    monkeypatch.setattr(reuse, "library_versions", lambda: {**versions, "torch": "0.0.1"})
    assert base != run_fingerprint(settings, "abc.dir", "code1")  # another torch, other numbers


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
