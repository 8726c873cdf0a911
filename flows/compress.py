"""Compress a registered model version: variants within an accuracy budget -> `<name>-compressed`."""

from pathlib import Path

from prefect import flow, runtime
from pydantic import BaseModel, Field

from modelmill.config import Settings, load_settings
from tasks.compress import compress_model, publish_compression_summary, register_compressed, resolve_source
from tasks.context import RunContext, close_run, git_commit, open_run
from tasks.data import sync_data
from tasks.reconcile import COMPRESSION
from tasks.writers import writer


class CompressParams(BaseModel):
    """Flow parameters: the project, the model version to compress, and budget overrides."""

    project_dir: str = Field(".", description="project folder (params.yaml, data/, mlflow/)")
    config: str = Field("params.yaml", description="configuration file, relative to the project")
    model: str | None = Field(
        None, description="NAME@alias or NAME/version (default: registry.model_name@champion)"
    )
    budget_points: float | None = Field(None, ge=0, description="override compress.budget_points")
    select_by: str | None = Field(None, description="override compress.select_by: size | latency")

    def settings(self) -> Settings:
        path = Path(self.project_dir, self.config)
        return load_settings(
            path if path.exists() or self.config != "params.yaml" else None,
            {"compress.budget_points": self.budget_points, "compress.select_by": self.select_by},
        )


def compress_registered(ctx: RunContext, model_ref: str, lineage: dict[str, str]) -> dict:
    """The compress steps on an open run (shared by this flow and `retrain`)."""
    source = resolve_source(ctx.tracker().client, model_ref)
    result = compress_model(ctx, source)
    registered = register_compressed(ctx, result, lineage)
    markdown = publish_compression_summary(ctx, result, registered)
    return {
        "source": result["source"],
        "selection": result["selection"],
        "registered": registered,
        "table": result["table"],
        "markdown": markdown,
    }


def compress_stage(ctx: RunContext, name: str, version: str, lineage: dict[str, str]) -> dict:
    """Compress a promoted champion as a stage of its own: its failure is recorded on the version
    (tag compression=failed, retried by a later run) and returned, never undoing the promotion."""
    client = ctx.tracker().client
    client.set_model_version_tag(name, version, COMPRESSION, "pending")
    try:
        result = compress_registered(ctx, f"{name}/{version}", lineage)
    except Exception as exc:  # noqa: BLE001 - reported in the summary and failed by the flow
        client.set_model_version_tag(name, version, COMPRESSION, "failed")
        client.set_model_version_tag(name, version, "compression_error", str(exc)[:5000])
        return {"error": f"compression of {name} version {version} failed: {exc}"}
    client.set_model_version_tag(name, version, COMPRESSION, "done")
    return result


@flow(name="compress", log_prints=True)
def compress(params: CompressParams = CompressParams()) -> dict:
    project_dir = str(Path(params.project_dir).resolve())
    with writer(project_dir, params.settings(), "compress"):  # data/ sync and the -compressed champion
        return _compress(params)


def _compress(params: CompressParams) -> dict:
    project_dir, settings = str(Path(params.project_dir).resolve()), params.settings()
    lineage = {
        "git_commit": git_commit(project_dir),
        "prefect_flow_run_id": str(runtime.flow_run.id),
        "prefect_flow_run_name": runtime.flow_run.name,
    }
    ctx = open_run(project_dir, settings, runtime.flow_run.name, {**lineage, "flow": "compress"})
    try:
        lineage["data_version"] = sync_data(project_dir, settings)
        ctx.tracker().set_tags({"data_version": lineage["data_version"]})
        summary = compress_registered(
            ctx, params.model or f"{settings.registry.model_name}@champion", lineage
        )
        summary["mlflow_run_id"] = ctx.run_id
    except BaseException:
        close_run(ctx, "FAILED")
        raise
    close_run(ctx, "FINISHED")
    return summary
