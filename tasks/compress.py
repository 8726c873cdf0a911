"""Compress task: variants of a registered model measured, logged (child run per variant,
table, plot, ONNX) and the selected one registered as `<name>-compressed`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from modelmill.compression import (
    CompressionReport,
    compress,
    markdown,
    planned_variants,
    plot_size_vs_accuracy,
    save,
    table,
)
from modelmill.errors import CompressionError
from tasks import progress
from tasks.context import Lineage, RunContext
from tasks.progress import stage
from tasks.registry import CHAMPION, alias_version, load_version
from tasks.split import SplitRef


@dataclass(frozen=True)
class ModelSource:
    """A registered model version to compress (`name@alias` or `name/version` resolved)."""

    name: str
    version: str
    is_champion: bool

    @property
    def ref(self) -> str:
        return f"{self.name} v{self.version}" + (" (champion)" if self.is_champion else "")


def resolve_source(client, ref: str) -> ModelSource:
    """`NAME@alias`, `NAME/version` or `NAME` (= NAME@champion) -> the model version."""
    name, alias, version = ref, CHAMPION, None
    if "@" in ref:
        name, alias = ref.split("@", 1)
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
    found = alias_version(client, name, alias) if version is None else _version(client, name, version)
    if found is None:
        what = f"alias '{alias}'" if version is None else f"version {version}"
        raise CompressionError(f"--model {ref}: registered model '{name}' has no {what}")
    version = found.version
    champion = alias_version(client, name, CHAMPION)
    return ModelSource(name, str(version), champion is not None and str(champion.version) == str(version))


def _version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException:
        return None


@stage("compress")
def compress_model(ctx: RunContext, source: ModelSource, splits: SplitRef) -> dict:
    """Build and measure the configured variants of the source model; log them; select one."""
    logger, cfg = get_run_logger(), ctx.settings.compress
    schema, xy = splits.schema(), splits.all_xy()
    teacher = load_version(source.name, source.version)
    with progress.bar("compress", total=len(planned_variants(cfg)), unit="variant") as bar:
        report = compress(
            teacher,
            schema.image_shape,
            xy,
            list(schema.classes),
            cfg,
            ctx.settings.train,
            on_variant=bar.advance,
        )
    for method, why in report.skipped.items():
        logger.warning("compress: %s skipped: %s", method, why)
    frame = log_report(ctx, report, source)
    logger.info("compression of %s:\n%s\n%s", source.ref, markdown(frame), report.selection.summary())
    chosen = report.chosen
    out = {
        "source": source.__dict__,
        "selection": report.selection.summary(),
        "chosen": None,
        "table": frame.to_dict(orient="records"),
    }
    if chosen is not None:
        path = Path(ctx.work_dir, f"{chosen.name}.mmz")
        save(path, chosen.stored())
        out["chosen"] = {"path": str(path), **report.row(chosen.name).flat()}
        if report.onnx is not None:
            out["chosen"].update(
                onnx_max_abs_diff=report.onnx.max_abs_diff, onnx_label_agreement=report.onnx.label_agreement
            )
    return out


def log_report(ctx: RunContext, report: CompressionReport, source: ModelSource):
    """Child MLflow run per variant, the table and plot on the parent run, a Prefect table."""
    from tasks.tracking import Tracker

    tracker, frame = ctx.tracker(), table(report.rows)
    for row in report.rows:
        child = Tracker.start(
            ctx.settings,
            ctx.project_dir,
            f"compress-{row.name}",
            {
                "flow": "compress",
                "variant": row.name,
                "method": row.method,
                "source_model": source.name,
                "source_version": source.version,
            },
            parent_run_id=ctx.run_id,
        )
        child.log_params({"variant": row.name, "method": row.method, **row.settings})
        child.log_metrics(_row_metrics(row.flat()))
        child.finish()
    tracker.log_table(frame, "compression/variants.json")
    tracker.log_text(markdown(frame) + "\n\n" + report.selection.summary() + "\n", "compression/summary.md")
    plot = plot_size_vs_accuracy(
        report.rows,
        Path(ctx.work_dir, "size_vs_accuracy.png"),
        report.selection.chosen,
        report.selection.budget_points,
    )
    tracker.log_artifact(plot, "compression")
    if report.onnx_model is not None:
        onnx_path = Path(ctx.work_dir, f"{report.selection.chosen}.onnx")
        onnx_path.write_bytes(report.onnx_model)
        tracker.log_artifact(onnx_path, "compression")
        tracker.log_metrics(
            {
                "compress_onnx_max_abs_diff": report.onnx.max_abs_diff,
                "compress_onnx_label_agreement": report.onnx.label_agreement,
            }
        )
    tracker.set_tags(
        {
            "compress_selected": report.selection.chosen or "none",
            **({"compress_onnx_error": report.onnx_error} if report.onnx_error else {}),
        }
    )
    create_table_artifact(
        table=frame.round(6).to_dict(orient="records"),
        key="compression-variants",
        description=f"compression of {source.ref}: {report.selection.summary().splitlines()[0]}",
    )
    return frame


def _row_metrics(flat: dict) -> dict[str, float]:
    return {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@stage("register-compressed", retries=2, retry_delay_seconds=3)
def register_compressed(ctx: RunContext, result: dict, lineage: Lineage, splits: SplitRef) -> dict | None:
    """Register the selected variant as a version of `<name><suffix>` (pyfunc), tagged with
    its source version, method and measured figures; alias `champion` when the source is."""
    import mlflow
    from tasks import compressed_model
    from tasks.compressed_model import ARTIFACT, CompressedClassifier

    chosen, source = result["chosen"], result["source"]
    if chosen is None:
        get_run_logger().warning("compress: nothing registered\n%s", result["selection"])
        return None
    tracker, probe, example = ctx.tracker(), CompressedClassifier(), splits.xy("test")[0][:4].numpy()
    probe.load_context(_Artifacts({ARTIFACT: chosen["path"]}))  # the output example, from the stored file
    model_uri = tracker.log_pyfunc_model(
        compressed_model.__file__,
        {ARTIFACT: chosen["path"]},
        example,
        probe.predict(None, example),
        name="compressed_model",
    )
    name = source["name"] + ctx.settings.compress.registered_suffix
    version = mlflow.register_model(model_uri, name, tags=_version_tags(chosen, source, lineage, ctx.run_id))
    if source["is_champion"]:
        tracker.client.set_registered_model_alias(name, CHAMPION, version.version)
    tracker.set_tags({"compressed_model": name, "compressed_version": version.version})
    get_run_logger().info(
        "registered %s version %s (%s of %s v%s)%s",
        name,
        version.version,
        chosen["name"],
        source["name"],
        source["version"],
        ", alias champion" if source["is_champion"] else "",
    )
    return {
        "name": name,
        "version": version.version,
        "variant": chosen["name"],
        "champion": source["is_champion"],
        "model_uri": model_uri,
    }


def _version_tags(chosen: dict, source: dict, lineage: Lineage, run_id: str) -> dict[str, str]:
    figures = {
        k: chosen[k]
        for k in chosen
        if k.startswith(
            ("accuracy", "macro_f1", "size", "latency_ms", "speedup", "parameters", "nonzero", "onnx")
        )
    }
    return {
        **lineage.tags(),
        "source_model": source["name"],
        "source_version": source["version"],
        "variant": chosen["name"],
        "method": chosen["method"],
        "settings": chosen["settings"],
        "mlflow_run_id": run_id,
        **{k: f"{v:.6g}" if isinstance(v, float) else str(v) for k, v in figures.items()},
    }


class _Artifacts:
    """The one attribute of mlflow's PythonModelContext that CompressedClassifier reads."""

    def __init__(self, artifacts: dict[str, str]):
        self.artifacts = artifacts


@stage("compress-summary")
def publish_compression_summary(ctx: RunContext, result: dict, registered: dict | None) -> str:
    """The compression outcome for humans: a Prefect markdown artifact and summary.md in MLflow."""
    import pandas as pd

    source = result["source"]
    outcome = (
        f"registered **{registered['name']} version {registered['version']}** "
        f"(`{registered['variant']}`{', alias `champion`' if registered['champion'] else ''})"
        if registered
        else "**nothing registered**: no variant fits the accuracy budget"
    )
    text = (
        f"# compress: {source['name']} v{source['version']}\n\n{outcome}\n\n"
        f"{result['selection']}\n\n{markdown(pd.DataFrame(result['table']))}\n"
    )
    create_markdown_artifact(
        markdown=text, key="compress-summary", description="modelmill compression summary"
    )
    ctx.tracker().log_text(text, "compression/outcome.md")
    return text
