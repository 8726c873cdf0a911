"""Compress task: variants of a registered model measured, logged (child run per variant,
table, plot, ONNX) and the selected one registered as `<name>-compressed`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from modelmill.compression import (
    CompressionReport,
    TimeBudget,
    compress,
    markdown,
    planned_variants,
    plot_size_vs_accuracy,
    table,
)
from modelmill.compression.storage import save_folder
from modelmill.errors import CompressionError
from tasks import progress
from tasks.aliases import alias_target, move_alias, version_of_run
from tasks.context import Lineage, RunContext
from tasks.progress import stage
from tasks.registry import CHAMPION, alias_version
from tasks.split import SplitRef

if TYPE_CHECKING:
    from torch import nn

    from mlflow import MlflowClient

# the stage's work after the variants, kept out of their budget (measured here, 2 shared cores, on
# digits and breast cancer: child runs, table, plot 0.75-0.84 s for 3-5 variants; explanation IoU 0.5 s)
LOGGING_SECONDS = 0.8
LOGGING_SECONDS_PER_VARIANT = 0.1


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
    """Build and measure the variants of the source model that apply to its family; log them,
    the methods that do not apply with the reason; select one. The selected variant keeps the
    source's kind, preprocessor (tokenizer included) and schema: it takes the same raw inputs."""
    from tasks.modelstore import load_verified

    logger, client = get_run_logger(), ctx.tracker().client
    budget = stage_budget(client, source, ctx.settings.compress.max_train_ratio)
    logger.info("compress: %s", budget.summary())
    schema, xy = splits.schema(), splits.all_xy()
    loaded = load_verified(client, source.name, source.version)
    teacher, spec = loaded.module, loaded.meta["spec"]
    if loaded.meta.get("preprocessing") not in (None, splits.preprocessor_state()):
        logger.warning("compress: %s was fitted on another train split than this run's", source.ref)
    tail = LOGGING_SECONDS + LOGGING_SECONDS_PER_VARIANT * len(planned_variants(ctx.settings.compress, spec))
    report = _report_with_progress(ctx, teacher, spec, xy, list(schema.classes), budget.keeping(tail))
    for method, why in report.skipped.items():
        logger.info("compress: %s: %s", method, why)
    for name, note in report.notes.items():
        logger.info("compress: %s: %s", name, note)
    tick = time.perf_counter()
    frame = log_report(ctx, report, source)
    report.timings["logging"] = time.perf_counter() - tick
    logger.info("compression of %s:\n%s\n%s", source.ref, markdown(frame), report.selection.summary())
    chosen = report.chosen
    out = {
        "source": source.__dict__,
        "selection": report.selection.summary(),
        "chosen": None,
        "table": frame.to_dict(orient="records"),
        "not_applicable": report.skipped,
        "notes": report.notes,
    }
    tick = time.perf_counter()
    keeps = chosen is None or _keeps_the_reasons(
        ctx, teacher, chosen.module, xy["test"], out, schema.kind, splits
    )
    report.timings["explanation_iou"] = time.perf_counter() - tick
    out["budget"] = _budget_line(report, budget)
    logger.info("compress: %s", out["budget"])
    ctx.tracker().log_metrics({"compress_seconds": budget.used()})
    if not keeps:
        return out
    if chosen is not None:
        path = Path(ctx.work_dir, chosen.name)  # a safe model folder (modelmill.modelfile)
        onnx = {"model.onnx": report.onnx_model} if report.onnx_model is not None else None  # served by ORT
        save_folder(path, chosen.module, chosen.arch, chosen.recipe, list(schema.classes), loaded.meta, onnx)
        out["chosen"] = {"path": str(path), **report.row(chosen.name).flat()}
        if report.onnx is not None:
            out["chosen"].update(
                onnx_max_abs_diff=report.onnx.max_abs_diff, onnx_label_agreement=report.onnx.label_agreement
            )
    return out


def stage_budget(client: MlflowClient, source: ModelSource, ratio: float | None) -> TimeBudget:
    """compress.max_train_ratio x the training seconds recorded by the run that trained the source
    version (metric train_seconds); no budget when the ratio is null or 0 or the run has none."""
    if not ratio:
        return TimeBudget(None)
    run_id = client.get_model_version(source.name, source.version).run_id
    metrics = client.get_run(run_id).data.metrics if run_id else {}
    if "train_seconds" not in metrics:
        get_run_logger().warning("compress: run %s has no train_seconds: no time budget", run_id)
        return TimeBudget(None)
    epochs = int(metrics["epochs_run"]) if "epochs_run" in metrics else None
    return TimeBudget.from_training(ratio, metrics["train_seconds"], epochs)


def _budget_line(report: CompressionReport, budget: TimeBudget) -> str:
    """How the stage spent its time, step by step (the issue-11 profile, on every run)."""
    steps = ", ".join(f"{step} {seconds:.2f}" for step, seconds in report.timings.items())
    return f"{budget.summary()}; seconds: {steps}"


def _report_with_progress(
    ctx: RunContext,
    teacher: nn.Module,
    spec: dict[str, Any],
    xy: dict[str, Any],
    classes: list[str],
    budget: TimeBudget,
) -> CompressionReport:
    """compress() of the teacher, a log line per variant as it is ready (and the bar on a terminal)."""
    logger, cfg, started = get_run_logger(), ctx.settings.compress, time.perf_counter()
    planned = planned_variants(cfg, spec)
    with progress.bar("compress", total=len(planned), unit="variant") as bar:

        def ready(name: str) -> None:
            bar.advance(name)
            logger.info("compress: %s ready after %.1fs (%d variants planned)", name,
                        time.perf_counter() - started, len(planned))  # fmt: skip

        return compress(teacher, xy, classes, cfg, ctx.settings.train, ready, ctx.settings.model.text, budget)


def _keeps_the_reasons(
    ctx: RunContext, teacher, variant, test_xy, out: dict, kind: str, splits: SplitRef
) -> bool:
    """IoU of the selected variant's top attributions with the float model's on the probe set,
    logged; False (nothing registered) when below compress.min_explanation_iou. Texts: words
    occluded with [MASK]; kinds without an attribution baseline are not checked."""
    from modelmill.evaluation.explanations import KIND_BASELINES, explanation_iou
    from modelmill.evaluation.text import text_explanation_iou, text_inputs

    cfg = ctx.settings.evaluation.explanations
    if kind == "text":
        iou = text_explanation_iou(teacher, variant, *test_xy, cfg, text_inputs(splits.preprocessor(), []))
    elif kind in KIND_BASELINES:
        iou = explanation_iou(teacher, variant, *test_xy, cfg)
    else:
        out["explanation_iou"] = None
        return True
    ctx.tracker().log_metrics({"compress_explanation_iou": iou})
    out["explanation_iou"] = iou
    floor = ctx.settings.compress.min_explanation_iou
    if floor is None or iou >= floor:
        return True
    out["selection"] += f"\nrejected: explanation IoU {iou:.3f} < compress.min_explanation_iou {floor}"
    get_run_logger().warning("compress: %s", out["selection"].splitlines()[-1])
    return False


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
    tracker.log_dict(report.skipped, "compression/not_applicable.json")
    tracker.log_text(
        markdown(frame)
        + "\n\n"
        + report.selection.summary()
        + "\n"
        + not_run_lines(report.skipped)
        + not_run_lines(report.notes),
        "compression/summary.md",
    )
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


def not_run_lines(skipped: dict[str, str]) -> str:
    """The methods that did not run, one markdown line each with the reason ('' when none)."""
    return "".join(f"- {method}: {why}\n" for method, why in skipped.items())


def _row_metrics(flat: dict) -> dict[str, float]:
    return {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@stage("register-compressed", retries=2, retry_delay_seconds=3)
def register_compressed(ctx: RunContext, result: dict, lineage: Lineage, splits: SplitRef) -> dict | None:
    """Register the selected variant as a version of `<name><suffix>` (pyfunc), tagged with
    its source version, method and measured figures; alias `champion` when the source is."""
    from tasks.modelstore import log_folder, register_version

    chosen, source = result["chosen"], result["source"]
    if chosen is None:
        get_run_logger().warning("compress: nothing registered\n%s", result["selection"])
        return None
    tracker, example = ctx.tracker(), splits.xy("test")[0][:4].numpy()
    name = source["name"] + ctx.settings.compress.registered_suffix
    existing = version_of_run(tracker.client, name, ctx.run_id)  # a retry: the version exists
    if existing is not None:
        return _registered(ctx, name, existing, chosen, source)
    model_uri, manifest_tags = log_folder(tracker, chosen["path"], example, name="compressed_model")
    tags = {**_version_tags(chosen, source, lineage, ctx.run_id), **manifest_tags}
    version = register_version(model_uri, name, tags)
    return _registered(ctx, name, version, chosen, source)


def _registered(ctx: RunContext, name: str, version: Any, chosen: dict, source: dict) -> dict:
    """Alias champion (compare-and-set, when the source is the champion), tags, log line, result."""
    tracker = ctx.tracker()
    if source["is_champion"]:
        current = alias_target(tracker.client, name, CHAMPION)
        reason = f"compressed {source['name']} v{source['version']}"
        move_alias(tracker.client, name, CHAMPION, str(version.version), current, reason, f"run {ctx.run_id}")
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
        "model_uri": str(version.source),
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
        if len(result["table"]) > 1
        else "**nothing registered**: no variant was built within the time budget"
    )
    not_run = not_run_lines(result.get("not_applicable") or {})
    subsets = not_run_lines(result.get("notes") or {})
    text = (
        f"# compress: {source['name']} v{source['version']}\n\n{outcome}\n\n"
        f"{result['selection']}\n\n{markdown(pd.DataFrame(result['table']))}\n"
        + (f"\nmethods and variants not run:\n\n{not_run}" if not_run else "")
        + (f"\nvariants trained on a subset (the time budget):\n\n{subsets}" if subsets else "")
        + (f"\n{result['budget']}\n" if result.get("budget") else "")
    )
    create_markdown_artifact(
        markdown=text, key="compress-summary", description="modelmill compression summary"
    )
    ctx.tracker().log_text(text, "compression/outcome.md")
    return text
