"""Label import: Label Studio exports -> consensus labels -> a new data version, in its own MLflow run."""

from pathlib import Path
from typing import Literal

from prefect import flow, runtime
from pydantic import BaseModel, Field

from modelmill.config import Settings, load_settings
from tasks.context import git_commit
from tasks.data import sync_data
from tasks.labels import inbox_exports, merge_exports, new_data_version, publish_import
from tasks.tracking import Tracker
from tasks.writers import writer


class ImportLabelsParams(BaseModel):
    """Flow parameters: the project, the exports (default: new files in labels.inbox), overrides."""

    project_dir: str = Field(".", description="project folder (params.yaml, data/, mlflow/)")
    config: str = Field("params.yaml", description="configuration file, relative to the project")
    paths: list[str] = Field(
        default_factory=list, description="export files; empty: new exports in labels.inbox"
    )
    strategy: Literal["majority", "dawid_skene"] | None = Field(None, description="override labels.strategy")
    min_agreement: float | None = Field(None, ge=0, le=1, description="override labels.min_agreement")
    strict: bool | None = Field(None, description="override labels.strict")

    def settings(self) -> Settings:
        path = Path(self.project_dir, self.config)
        return load_settings(
            path if path.exists() or self.config != "params.yaml" else None,
            {
                "labels.strategy": self.strategy,
                "labels.min_agreement": self.min_agreement,
                "labels.strict": self.strict,
            },
        )


@flow(name="import-labels", log_prints=True)
def import_labels(params: ImportLabelsParams = ImportLabelsParams()) -> dict:
    project_dir = str(Path(params.project_dir).resolve())
    with writer(project_dir, params.settings(), "import-labels"):
        return _import_labels(params)


def _import_labels(params: ImportLabelsParams) -> dict:
    project_dir, settings = str(Path(params.project_dir).resolve()), params.settings()
    # relative paths are relative to the project (the CLI passes absolute ones)
    paths = [str(Path(project_dir, p).resolve()) for p in params.paths] or inbox_exports(
        project_dir, settings
    )
    before = sync_data(project_dir, settings)
    if not paths:
        print("no new Label Studio exports")
        return {"changed": False, "data_version_before": before, "data_version_after": before, "files": []}
    tracker = Tracker.start(
        settings,
        project_dir,
        f"import-labels-{runtime.flow_run.name}",
        {
            "flow": "import-labels",
            "data_version_before": before,
            "git_commit": git_commit(project_dir),
            "prefect_flow_run_id": str(runtime.flow_run.id),
            "prefect_flow_run_name": runtime.flow_run.name,
        },
    )
    try:
        tracker.log_params({f"labels.{k}": v for k, v in settings.labels.model_dump().items()})
        report = merge_exports(project_dir, settings, paths)
        after = new_data_version(project_dir, settings, report) if report.changed else before
        summary = publish_import(project_dir, settings, tracker.run_id, report, before, after)
    except BaseException as exc:
        tracker.set_tags({"error": str(exc)[:5000]})
        tracker.finish("FAILED")
        raise
    tracker.finish("FINISHED")
    return {**summary, "mlflow_run_id": tracker.run_id}
