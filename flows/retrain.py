"""The nightly retrain: sync data -> validate -> train -> evaluate -> gate -> register -> summary."""

from pathlib import Path

from prefect import flow, runtime
from pydantic import BaseModel, Field

from flows.compress import compress_registered
from modelmill.config import Settings, load_settings
from tasks.context import close_run, git_commit, open_run
from tasks.data import sync_data
from tasks.evaluate import evaluate, gate
from tasks.labels import inbox_exports
from tasks.registry import register
from tasks.report import publish_summary
from tasks.train import train_challenger
from tasks.validate import validate_data


class RetrainParams(BaseModel):
    """Flow parameters: where the project is, which config, and per-run overrides."""

    project_dir: str = Field(".", description="project folder (params.yaml, data/, mlflow/)")
    config: str = Field("params.yaml", description="configuration file, relative to the project")
    epochs: int | None = Field(None, ge=1, description="override train.epochs")
    learning_rate: float | None = Field(None, gt=0, description="override train.learning_rate")
    batch_size: int | None = Field(None, ge=1, description="override train.batch_size")
    seed: int | None = Field(None, description="override train.seed")
    gate_tolerance: float | None = Field(None, ge=0, description="override gate.tolerance")
    model_name: str | None = Field(None, description="override registry.model_name")
    force: bool = Field(False, description="retrain even when nothing changed")

    def settings(self) -> Settings:
        path = Path(self.project_dir, self.config)
        return load_settings(path if path.exists() or self.config != "params.yaml" else None, {
            "train.epochs": self.epochs, "train.learning_rate": self.learning_rate,
            "train.batch_size": self.batch_size, "train.seed": self.seed,
            "gate.tolerance": self.gate_tolerance, "registry.model_name": self.model_name})


@flow(name="retrain", log_prints=True)
def retrain(params: RetrainParams = RetrainParams()) -> dict:
    project_dir, settings = str(Path(params.project_dir).resolve()), params.settings()
    lineage = {"git_commit": git_commit(project_dir), "prefect_flow_run_id": str(runtime.flow_run.id),
               "prefect_flow_run_name": runtime.flow_run.name}
    ctx = open_run(project_dir, settings, runtime.flow_run.name, {**lineage, "flow": "retrain"})
    try:
        data_version = sync_data(project_dir, settings)
        # --- labels (issue 3): new Label Studio exports in labels.inbox become a new data version first
        if inbox_exports(project_dir, settings):
            from flows.import_labels import ImportLabelsParams, import_labels

            imported = import_labels(ImportLabelsParams(project_dir=project_dir, config=params.config))
            data_version = imported["data_version_after"]
        # --- end labels
        lineage["data_version"] = data_version
        ctx.tracker().set_tags({"data_version": data_version})
        validate_data(ctx)
        checkpoint = train_challenger(ctx, data_version)
        evaluation = evaluate(ctx, checkpoint)
        decision = gate(ctx, evaluation)
        registered = register(ctx, checkpoint, decision, lineage, evaluation.pop("input_example"))
        # --- compress (issue 5): variants of a newly promoted champion -> `<name>-compressed`
        compression = (compress_registered(ctx, f"{registered['name']}/{registered['version']}", lineage)
                       if settings.compress.enabled and registered["promoted"] else None)
        # --- end compress
        summary = {"data_version": data_version, "evaluation": evaluation, "registry": registered,
                   "compression": compression,
                   "gate_reason": decision.reason, "mlflow_run_id": ctx.run_id,
                   "experiment_id": ctx.tracker().client.get_run(ctx.run_id).info.experiment_id}
        summary["markdown"] = publish_summary(ctx, summary)
    except BaseException:
        close_run(ctx, "FAILED")
        raise
    close_run(ctx, "FINISHED")
    return summary
