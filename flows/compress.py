"""Compress a registered model version: variants within an accuracy budget -> `<name>-compressed`."""

from pathlib import Path
from typing import Any

from prefect import flow, runtime

from flows.params import CompressParams
from tasks.compress import compress_model, publish_compression_summary, register_compressed, resolve_source
from tasks.context import Lineage, RunContext, flow_run, lineage_of_this_run
from tasks.data import sync_data
from tasks.reconcile import COMPRESSION, reconcile
from tasks.split import SplitRef, split_data
from tasks.writers import writer

__all__ = ["CompressParams", "compress", "compress_registered", "compress_stage"]


def compress_registered(
    ctx: RunContext, model_ref: str, lineage: Lineage, splits: SplitRef
) -> dict[str, Any]:
    """The compress stages on an open run (shared by this flow and `retrain`)."""
    source = resolve_source(ctx.tracker().client, model_ref)
    result = compress_model(ctx, source, splits)
    registered = register_compressed(ctx, result, lineage, splits)
    markdown = publish_compression_summary(ctx, result, registered)
    return {
        "source": result["source"],
        "selection": result["selection"],
        "registered": registered,
        "table": result["table"],
        "markdown": markdown,
        "explanation_iou": result.get("explanation_iou"),
        "not_applicable": result.get("not_applicable") or {},
        "notes": result.get("notes") or {},
    }


def compress_stage(
    ctx: RunContext, name: str, version: str, lineage: Lineage, splits: SplitRef
) -> dict[str, Any]:
    """Compress a promoted champion as a stage of its own: its failure is recorded on the version
    (tag compression=failed, retried by a later run) and returned, never undoing the promotion."""
    client = ctx.tracker().client
    client.set_model_version_tag(name, version, COMPRESSION, "pending")
    try:
        result = compress_registered(ctx, f"{name}/{version}", lineage, splits)
    except Exception as exc:  # noqa: BLE001 - reported in the summary and failed by the flow
        client.set_model_version_tag(name, version, COMPRESSION, "failed")
        client.set_model_version_tag(name, version, "compression_error", str(exc)[:5000])
        return {"error": f"compression of {name} version {version} failed: {exc}"}
    client.set_model_version_tag(name, version, COMPRESSION, "done")
    return result


@flow(name="compress", log_prints=True)
def compress(params: CompressParams = CompressParams()) -> dict[str, Any]:
    project_dir = str(Path(params.project_dir).resolve())
    with writer(project_dir, params.settings(), "compress"):  # data/ sync and the -compressed champion
        return _compress(params)


def _compress(params: CompressParams) -> dict[str, Any]:
    project_dir, settings = str(Path(params.project_dir).resolve()), params.settings()
    reconcile(project_dir, settings, f"compress {runtime.flow_run.name}")
    data_version = sync_data(project_dir, settings)
    lineage = lineage_of_this_run(project_dir, data_version)
    with flow_run(project_dir, settings, runtime.flow_run.name, lineage.tags(flow="compress")) as ctx:
        splits = split_data(ctx, data_version)
        model = params.model or f"{settings.registry.model_name}@champion"
        summary = compress_registered(ctx, model, lineage, splits)
        summary["mlflow_run_id"] = ctx.run_id
    return summary
