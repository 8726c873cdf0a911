"""The tuning flow: sync data -> Optuna study (pruned, resumable, parallel) -> best params."""

from pathlib import Path
from typing import Any

from prefect import flow, runtime

from flows.params import TuneParams
from tasks.context import git_commit
from tasks.data import sync_data
from tasks.tune import tune_study
from tasks.writers import writer

__all__ = ["TuneParams", "tune"]


@flow(name="tune", log_prints=True)
def tune(params: TuneParams = TuneParams()) -> dict[str, Any]:
    project_dir, settings = str(Path(params.project_dir).resolve()), params.settings()
    tags = {
        "git_commit": git_commit(project_dir),
        "prefect_flow_run_id": str(runtime.flow_run.id),
        "prefect_flow_run_name": runtime.flow_run.name,
        "flow": "tune",
    }
    with writer(project_dir, settings, "tune"):  # the sync may write data/; the study itself does not
        data_version = sync_data(project_dir, settings)
    return tune_study(project_dir, settings, data_version, f"{runtime.flow_run.name}-tune", tags)
