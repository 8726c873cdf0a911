"""Label import: Label Studio exports -> consensus labels -> a new data version, in an MLflow run
of its own."""

from pathlib import Path
from typing import Any

from prefect import flow, runtime

from flows.params import ImportLabelsParams
from modelmill.config import Settings
from tasks.context import git_commit
from tasks.data import sync_data
from tasks.labels import inbox_exports, merge_exports, new_data_version, publish_import
from tasks.reconcile import reconcile
from tasks.tracking import tracked_run
from tasks.writers import writer


@flow(name="import-labels", log_prints=True)
def import_labels(params: ImportLabelsParams = ImportLabelsParams()) -> dict[str, Any]:
    project_dir = str(Path(params.project_dir).resolve())
    with writer(project_dir, params.settings(), "import-labels"):  # data/ and data.dvc
        return _import_labels(params)


def _import_labels(params: ImportLabelsParams) -> dict[str, Any]:
    project_dir, settings = str(Path(params.project_dir).resolve()), params.settings()
    reconcile(project_dir, settings, f"import-labels {runtime.flow_run.name}")
    # relative paths are relative to the project (the CLI passes absolute ones)
    paths = [str(Path(project_dir, p).resolve()) for p in params.paths]
    paths = paths or inbox_exports(project_dir, settings)
    before = sync_data(project_dir, settings)
    if not paths:
        print("no new Label Studio exports")
        return {"changed": False, "data_version_before": before, "data_version_after": before, "files": []}
    tags = {
        "flow": "import-labels",
        "data_version_before": before,
        "git_commit": git_commit(project_dir),
        "prefect_flow_run_id": str(runtime.flow_run.id),
        "prefect_flow_run_name": runtime.flow_run.name,
    }
    with tracked_run(settings, project_dir, f"import-labels-{runtime.flow_run.name}", tags) as tracker:
        tracker.log_params({f"labels.{k}": v for k, v in settings.labels.model_dump().items()})
        report = merge_exports(project_dir, settings, paths)
        after = new_data_version(project_dir, settings, report) if report.changed else before
        summary = publish_import(project_dir, settings, tracker.run_id, report, before, after)
    return {**summary, "mlflow_run_id": tracker.run_id}


def import_new_labels(project_dir: str, config: str, settings: Settings, data_version: str) -> str:
    """The nightly's label stage: new exports in labels.inbox become a data version (the
    import-labels flow, shown as a subflow); the data version to train on."""
    if not inbox_exports(project_dir, settings):
        return data_version
    result = import_labels(ImportLabelsParams(project_dir=project_dir, config=config))
    return str(result["data_version_after"])
