"""Deployments on the real stack: Quick run through the API, the cron schedule, MLflow lineage."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.ops import prefect_api as api

pytestmark = [pytest.mark.slow]


def test_quick_run_completes_and_logs_to_the_mlflow_server(stack, quick_run_result):
    assert quick_run_result["state_type"] == "COMPLETED", stack.log("worker").read_text()[-3000:]
    runs = api.mlflow_runs(stack.mlflow_url, f"tags.prefect_flow_run_id = '{quick_run_result['id']}'")
    assert len(runs) == 1
    run = runs[0]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    # TEST_PARAMS' 2-epoch tiny CNN measured 0.57-0.64 over 3 seeds in-process (chance: 0.10)
    assert metrics["test_accuracy"] >= 0.55 and "val_loss" in metrics
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["data_version"].endswith(".dir") and tags["code_version"]
    versions = api.mlflow_get(
        stack.mlflow_url, "model-versions/search", filter=f"run_id = '{run['info']['run_id']}'"
    )["model_versions"]
    # the run may also register `<name>-compressed` (compress step); one version of the model itself
    versions = [v for v in versions if not v["name"].endswith("-compressed")]
    assert len(versions) == 1
    # as it was when the run finished: later tests (skip-if-unchanged) retrain and may move it
    assert quick_run_result["champion_version"] == versions[0]["version"]


def test_evaluation_figures_and_the_card_read_back_through_the_servers_rest_api(stack, quick_run_result):
    """What issue 16 logs, as a client of the MLflow server sees it (no local store involved)."""
    run = api.mlflow_runs(stack.mlflow_url, f"tags.prefect_flow_run_id = '{quick_run_result['id']}'")[0]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["test_accuracy_ci_low"] <= metrics["test_accuracy"] <= metrics["test_accuracy_ci_high"]
    assert 0 <= metrics["calibration_ece"] <= 1
    assert {"explain_completeness_error_median", "explain_randomisation_spearman"} <= set(metrics)
    run_id = run["info"]["run_id"]
    listed = api.call(f"{stack.mlflow_url}/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=evaluation")
    listed = listed["files"]
    assert {"evaluation/evaluation.json", "evaluation/reliability.png"} <= {f["path"] for f in listed}
    version = api.mlflow_get(stack.mlflow_url, "model-versions/search", filter=f"run_id = '{run_id}'")[
        "model_versions"
    ][0]
    tags = {t["key"]: t["value"] for t in version.get("tags", [])}
    assert tags["model_card"] == f"runs:/{run_id}/card/README.md"
    assert version["description"].startswith("---\nlibrary_name: pytorch")
    assert "## Test metrics" in version["description"]


def test_nightly_deployment_has_cron_schedule_and_concurrency_limit(stack):
    nightly = api.deployment(stack.prefect_api_url, "nightly-retrain")
    [schedule] = nightly["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * *" and schedule["active"]
    assert schedule["schedule"]["timezone"] == "Europe/Berlin"  # ops.timezone of the project's params.yaml
    assert nightly["global_concurrency_limit"]["limit"] == 1
    assert nightly["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": stack.root}}
    ]


def test_scheduler_creates_runs_for_the_cron_deployment(stack):
    """With SQLAlchemy 2.1 the scheduler silently created no runs (STACK.md): catch that."""
    import time

    nightly = api.deployment(stack.prefect_api_url, "nightly-retrain")
    deadline, runs = time.monotonic() + 60, []
    while time.monotonic() < deadline and not runs:
        runs = api.call(
            f"{stack.prefect_api_url}/flow_runs/filter",
            {
                "deployments": {"id": {"any_": [nightly["id"]]}},
                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            },
        )
        time.sleep(1)
    assert runs, "the scheduler created no scheduled runs for nightly-retrain"
    berlin = ZoneInfo("Europe/Berlin")
    starts = [datetime.fromisoformat(run["expected_start_time"]).astimezone(berlin) for run in runs]
    assert all((start.hour, start.minute) == (2, 0) for start in starts), starts
