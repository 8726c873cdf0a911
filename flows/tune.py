"""The tuning flow: sync data -> Optuna study (pruned, resumable, parallel) -> best params."""

from pathlib import Path

from prefect import flow, runtime
from pydantic import BaseModel, Field

from modelmill.config import Settings, load_settings
from tasks.context import git_commit
from tasks.data import sync_data
from tasks.tune import tune_study


class TuneParams(BaseModel):
    """Flow parameters: the project, the configuration and the tuning budget of this run."""

    project_dir: str = Field(".", description="project folder (params.yaml, data/, optuna/)")
    config: str = Field("params.yaml", description="configuration file, relative to the project")
    trials: int | None = Field(None, ge=1, description="override tune.trials (total in the study)")
    timeout: float | None = Field(None, gt=0, description="override tune.timeout (seconds, this run)")
    workers: int | None = Field(None, ge=1, description="override tune.workers (trials at once)")
    pruner: str | None = Field(None, description="override tune.pruner: hyperband | median | none")
    storage: str | None = Field(None, description="override tune.storage (SQLAlchemy URL)")
    cluster: str | None = Field(None, description="override tune.cluster: local:N or tcp://HOST:8786 (Dask)")

    def settings(self) -> Settings:
        path = Path(self.project_dir, self.config)
        return load_settings(
            path if path.exists() or self.config != "params.yaml" else None,
            {
                "tune.trials": self.trials,
                "tune.timeout": self.timeout,
                "tune.workers": self.workers,
                "tune.pruner": self.pruner,
                "tune.storage": self.storage,
                "tune.cluster": self.cluster,
            },
        )


@flow(name="tune", log_prints=True)
def tune(params: TuneParams = TuneParams()) -> dict:
    project_dir, settings = str(Path(params.project_dir).resolve()), params.settings()
    tags = {
        "git_commit": git_commit(project_dir),
        "prefect_flow_run_id": str(runtime.flow_run.id),
        "prefect_flow_run_name": runtime.flow_run.name,
        "flow": "tune",
    }
    data_version = sync_data(project_dir, settings)
    return tune_study(project_dir, settings, data_version, f"{runtime.flow_run.name}-tune", tags)
