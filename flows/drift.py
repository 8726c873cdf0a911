"""Drift between two data versions (or a data version and logged inputs), through the champion:
one MLflow run with the report, a Prefect artifact, the event `modelmill.drift.detected` on drift."""

from pathlib import Path
from typing import Any

from prefect import flow, runtime

from flows.params import DriftParams
from modelmill.errors import DriftDetected
from tasks.context import flow_run, lineage_of_this_run
from tasks.drift import check_revisions


@flow(name="drift", log_prints=True)
def drift(params: DriftParams = DriftParams()) -> dict[str, Any]:
    project_dir, settings = str(Path(params.project_dir).resolve()), params.settings()
    tags = lineage_of_this_run(project_dir).tags(flow="drift")
    with flow_run(project_dir, settings, runtime.flow_run.name, tags, log_config=False) as ctx:
        ctx.tracker().log_params({f"drift.{k}": v for k, v in settings.drift.model_dump().items()})
        result = check_revisions(ctx, params.reference, params.current)
        result["mlflow_run_id"] = ctx.run_id
    if result["drifted"] and params.fail_on_drift:
        raise DriftDetected(f"drift detected: {params.reference} -> {params.current}")
    return result
