"""The few Prefect and MLflow REST calls the operations tests make (what the dashboards call)."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def call(url: str, body: dict | None = None, method: str | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method or ("POST" if data else "GET"),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def deployment(api: str, name: str) -> dict:
    found = call(f"{api}/deployments/filter", {"deployments": {"name": {"any_": [name]}}})
    assert found, f"deployment {name} not found"
    return found[0]


def quick_run(api: str, deployment_id: str) -> str:
    """What the dashboard's Quick run posts: a scheduled run with the deployment's defaults."""
    run = call(
        f"{api}/deployments/{deployment_id}/create_flow_run",
        {"state": {"type": "SCHEDULED", "message": "Quick run"}},
    )
    return run["id"]


def wait_terminal(api: str, flow_run_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = call(f"{api}/flow_runs/{flow_run_id}")
        if run["state_type"] in TERMINAL:
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} still {run['state_type']} after {timeout}s")


def mlflow_runs(mlflow: str, filter_string: str) -> list[dict]:
    found = call(
        f"{mlflow}/api/2.0/mlflow/runs/search",
        {
            "experiment_ids": [exp["experiment_id"] for exp in mlflow_experiments(mlflow)],
            "filter": filter_string,
        },
    )
    return found.get("runs", [])


def mlflow_experiments(mlflow: str) -> list[dict]:
    return call(f"{mlflow}/api/2.0/mlflow/experiments/search", {"max_results": 100})["experiments"]


def mlflow_get(mlflow: str, path: str, **query) -> dict:
    return call(f"{mlflow}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}")
