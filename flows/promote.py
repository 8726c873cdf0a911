"""Promote a version to champion, or roll the champion back: one click each in the Prefect dashboard
(deployments `promote` and `rollback`); compare-and-set, recorded in the audit history."""

from pathlib import Path
from typing import Any

from prefect import flow, runtime, task

from flows.alerts import alert_on_failure
from flows.params import PromoteParams, RollbackParams
from tasks.writers import writer


@task(name="move-champion", retries=2, retry_delay_seconds=3)
def move_champion(project_dir: str, settings_json: str, name: str, version: str | None, reason: str,
                  actor: str, rollback: bool) -> dict[str, Any]:  # fmt: skip
    from modelmill.config import Settings
    from tasks.promotion import promote_version
    from tasks.promotion import rollback as roll_back
    from tasks.tracking import connect

    client, _ = connect(Settings.model_validate_json(settings_json), project_dir)
    if rollback:
        return roll_back(client, name, version, reason, actor).model_dump()
    return promote_version(client, name, str(version), reason, actor).model_dump()


@flow(name="promote", log_prints=True, on_failure=[alert_on_failure])
def promote(params: PromoteParams) -> dict[str, Any]:
    project_dir, settings = str(Path(params.project_dir).resolve()), params.settings()
    name = params.model or settings.registry.model_name
    with writer(project_dir, settings, "promote"):
        return move_champion(project_dir, settings.private_json(), name, params.version, params.reason,
                             f"flow run {runtime.flow_run.name}", rollback=False)  # fmt: skip


@flow(name="rollback", log_prints=True, on_failure=[alert_on_failure])
def rollback(params: RollbackParams = RollbackParams()) -> dict[str, Any]:
    project_dir, settings = str(Path(params.project_dir).resolve()), params.settings()
    name = params.model or settings.registry.model_name
    with writer(project_dir, settings, "rollback"):
        return move_champion(project_dir, settings.private_json(), name, params.to, params.reason,
                             f"flow run {runtime.flow_run.name}", rollback=True)  # fmt: skip
