"""Failure alerting: a flow-run on_failure hook that records what failed and calls a webhook."""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path

logger = logging.getLogger("modelmill.alerts")


def alert_on_failure(flow, flow_run, state) -> None:
    """Prefect on_failure hook: a markdown artifact naming the failed task, the error and links;
    then a POST of the same summary to `ops.alert_webhook_url` when it is configured."""
    try:
        failure = failure_summary(flow.name, flow_run, state)
        _create_artifact(flow_run.id, failure["markdown"])
        url = _webhook_url(flow_run.parameters)
        if url:
            notify(url, failure)
    except Exception:  # an alert must never mask the flow's own failure
        logger.exception("failure alert for flow run %s could not be sent", flow_run.id)


def failure_summary(flow_name: str, flow_run, state) -> dict:
    from prefect.settings import PREFECT_UI_URL

    failed = _failed_tasks(flow_run.id)
    ui = PREFECT_UI_URL.value()
    run_url = f"{ui}/runs/flow-run/{flow_run.id}" if ui else None
    error = (state.message or "").strip() or "no error message"
    task_lines = (
        "\n".join(f"- task **{name}**: {message}" for name, message in failed)
        or "- (no task failed: the flow body raised)"
    )
    markdown = (
        f"# {flow_name} failed\n\nFlow run **{flow_run.name}** (`{flow_run.id}`) ended "
        f"in state {state.type.value}.\n\n## Failed tasks\n{task_lines}\n\n"
        f"## Error\n```\n{error[:2000]}\n```\n"
        + (f"\nPrefect UI: [flow run]({run_url})\n" if run_url else "")
    )
    return {
        "flow": flow_name,
        "flow_run_id": str(flow_run.id),
        "flow_run_name": flow_run.name,
        "state": state.type.value,
        "error": error[:2000],
        "failed_tasks": [{"task": name, "error": message} for name, message in failed],
        "flow_run_url": run_url,
        "markdown": markdown,
    }


def _failed_tasks(flow_run_id) -> list[tuple[str, str]]:
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    # task-run states reach the API through events, persisted a moment after the task ends:
    # poll briefly so the hook, which runs right after the failure, does not read too early
    with get_client(sync_client=True) as client:
        for _ in range(20):
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                task_run_filter=TaskRunFilter(
                    state=TaskRunFilterState(
                        type=TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])
                    )
                ),
            )
            if runs:
                break
            time.sleep(0.5)
    return [(run.name, (run.state.message or "").strip() if run.state else "") for run in runs]


def _create_artifact(flow_run_id, markdown: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        client.create_artifact(
            ArtifactCreate(
                key="retrain-failure",
                type="markdown",
                data=markdown,
                description="modelmill failure summary",
                flow_run_id=flow_run_id,
            )
        )


def _webhook_url(parameters: dict) -> str | None:
    """ops.alert_webhook_url of the run's configuration (the flow's project_dir/config parameters)."""
    from modelmill.config import load_project_settings

    params = parameters.get("params") or {}
    params = params if isinstance(params, dict) else params.model_dump()
    project_dir, config = params.get("project_dir", "."), params.get("config", "params.yaml")
    if not Path(project_dir, config).exists():
        config = "params.yaml"  # the run failed on its config: alert with the project's defaults
    url = load_project_settings(project_dir, config).ops.alert_webhook_url
    return url.get_secret_value() if url is not None else None


def notify(url: str, failure: dict, timeout: float = 5.0) -> None:
    body = json.dumps(
        {k: v for k, v in failure.items() if k != "markdown"} | {"text": failure["markdown"]}
    ).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()
