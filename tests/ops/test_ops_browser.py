"""The dashboards in headless Chromium: MLflow shows the run, metrics and champion; Prefect's
Quick run on the retrain deployment creates a flow run that completes. Screenshots in test-artifacts/."""

from __future__ import annotations

import pytest

from tests.ops import prefect_api as api
from tests.ops.conftest import shot

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _close_assistant(page) -> None:
    """MLflow 3 opens an assistant side panel; close it so the screenshots show the content."""
    close = page.locator("button[aria-label='Close']").first
    if close.count():
        close.click(timeout=2000)


def test_mlflow_ui_lists_experiment_run_metrics_and_champion(stack, quick_run_result, page):
    [run] = api.mlflow_runs(stack.mlflow_url, f"tags.prefect_flow_run_id = '{quick_run_result['id']}'")
    experiment_id, run_id = run["info"]["experiment_id"], run["info"]["run_id"]
    run_name = run["info"]["run_name"]

    page.goto(f"{stack.mlflow_url}/#/experiments")
    page.get_by_text("Model training", exact=True).click()  # the UI opens in its GenAI view
    page.get_by_role("link", name="modelmill").click()
    page.get_by_role("link", name=run_name).first.wait_for()
    _close_assistant(page)
    shot(page, "mlflow-experiment-runs")

    page.goto(f"{stack.mlflow_url}/#/experiments/{experiment_id}/runs/{run_id}")
    page.get_by_text("test_accuracy").first.wait_for()
    page.get_by_text("data_version").first.wait_for()
    shot(page, "mlflow-run-metrics")

    model = api.mlflow_get(stack.mlflow_url, "model-versions/search", filter=f"run_id = '{run_id}'")[
        "model_versions"
    ][0]
    page.goto(f"{stack.mlflow_url}/#/models/{model['name']}")
    page.get_by_text("@ champion").or_(page.get_by_text("champion", exact=True)).first.wait_for()
    shot(page, "mlflow-registered-model-champion")


def test_prefect_ui_quick_run_creates_a_flow_run_that_completes(stack, quick_run_result, page):
    page.goto(f"{stack.prefect_url}/deployments")
    page.get_by_text("nightly-retrain").first.wait_for()
    page.get_by_text("retrain", exact=True).first.wait_for()
    shot(page, "prefect-deployments")

    deployment = api.deployment(stack.prefect_api_url, "retrain")
    page.goto(f"{stack.prefect_url}/deployments/deployment/{deployment['id']}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Quick run").click()
    page.get_by_text("scheduled to start").first.wait_for()
    created = api.call(
        f"{stack.prefect_api_url}/flow_runs/filter",
        {
            "deployments": {"id": {"any_": [deployment["id"]]}},
            "flow_runs": {"id": {"not_any_": [quick_run_result["id"]]}},
        },
    )
    assert len(created) == 1, [run["name"] for run in created]  # one click, one flow run
    flow_run_id = created[0]["id"]

    finished = api.wait_terminal(stack.prefect_api_url, flow_run_id)
    assert finished["state_type"] == "COMPLETED", stack.log("worker").read_text()[-3000:]
    assert finished["deployment_id"] == deployment["id"]
    page.goto(f"{stack.prefect_url}/runs/flow-run/{flow_run_id}")
    page.get_by_text(created[0]["name"]).first.wait_for()
    page.get_by_text("Completed").first.wait_for()
    shot(page, "prefect-quick-run-completed")


def test_prefect_ui_graph_of_a_retrain_run_shows_each_stage(stack, quick_run_result, page):
    """The first (training) run of the stack: its graph has one task run per stage."""
    flow_run_id = quick_run_result["id"]
    runs = api.call(
        f"{stack.prefect_api_url}/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    )
    names = {run["name"].rsplit("-", 1)[0] for run in runs}
    stages = {"sync-data", "find-reusable-run", "validate", "split", "train", "evaluate", "gate", "register",
              "summary"}  # fmt: skip
    assert stages <= names, stages - names
    page.goto(f"{stack.prefect_url}/runs/flow-run/{flow_run_id}")
    page.get_by_text("Completed").first.wait_for()
    page.wait_for_timeout(2000)  # the graph (a canvas) renders after the run's data arrives
    shot(page, "prefect-retrain-graph")
