"""Label tasks: Label Studio exports -> a new data version (with its own MLflow run); tasks back out."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact

from modelmill.config import Settings
from modelmill.data import ID, load_dataset
from modelmill.errors import ModelmillError
from modelmill.labels import (
    ImportReport,
    archived_hashes,
    build_tasks,
    file_sha256,
    import_exports,
    select_uncertain,
    write_labeling_config,
    write_tasks,
)
from tasks.data import push_data, version_data
from tasks.progress import stage
from tasks.tracking import Tracker

EXPORT_SUFFIXES = (".json", ".csv")
REVIEW_ROWS_SHOWN = 200


def inbox_exports(project_dir: str | Path, settings: Settings) -> list[str]:
    """Exports in labels.inbox whose content is not archived under data/exports/ yet."""
    inbox = Path(project_dir, settings.labels.inbox)
    if not inbox.is_dir():
        return []
    done = archived_hashes(Path(project_dir, settings.data.dir))
    candidates = sorted(p for p in inbox.iterdir() if p.is_file() and p.suffix.lower() in EXPORT_SUFFIXES)
    return [str(p) for p in candidates if file_sha256(p) not in done]


@stage("import-label-exports")
def merge_exports(project_dir: str, settings: Settings, paths: list[str]) -> ImportReport:
    """Parse, resolve and merge the exports into data/ (no retries: a bad export stays bad)."""
    logger = get_run_logger()
    report = import_exports(Path(project_dir, settings.data.dir), paths, settings.labels)
    for problem in report.problems[:20]:
        logger.warning("skipped: %s", problem)
    logger.info(
        "labels: %d new, %d changed, %d unchanged; %d items for review; files written: %s",
        report.labels_new,
        report.labels_changed,
        report.labels_unchanged,
        len(report.review),
        ", ".join(report.written) or "none",
    )
    return report


@stage("version-labels")
def new_data_version(project_dir: str, settings: Settings, report: ImportReport) -> str:
    """`dvc add` data/ (git-commit data.dvc when data.git_commit) and push to the remote."""
    message = f"import-labels: {report.labels_new} new, {report.labels_changed} changed labels"
    version = version_data(project_dir, settings, message)
    push_data(project_dir, settings)
    return version


@stage("label-import-report")
def publish_import(
    project_dir: str, settings: Settings, run_id: str, report: ImportReport, before: str, after: str
) -> dict:
    """The report as MLflow metrics/tags/artifacts of the import run and Prefect table artifacts."""
    tracker, res = Tracker.attach(settings, project_dir, run_id), report.resolution
    tracker.set_tags(
        {
            "data_version_before": before,
            "data_version_after": after,
            "data_version": after,
            "labels_strategy": res.strategy,
            "kappa_kind": res.kappa_kind,
            "exports": ",".join(f["sha256"][:12] for f in report.files),
            "data_changed": str(report.changed).lower(),
        }
    )
    tracker.log_metrics(report.metrics())
    summary = report_dict(report, before, after)
    tracker.log_dict(summary, "labels/import_report.json")
    tracker.log_text(report.review.to_csv(index=False), "labels/review.csv")
    create_table_artifact(
        table=report.rows(), key="label-import", description=f"Label import: data version {before} -> {after}"
    )
    if not report.review.empty:
        shown = report.review.head(REVIEW_ROWS_SHOWN)
        create_table_artifact(
            table=json.loads(shown.to_json(orient="records")),
            key="label-review",
            description=f"{len(report.review)} items for review (first {len(shown)})",
        )
    return summary


def report_dict(report: ImportReport, before: str, after: str) -> dict:
    return {
        "data_version_before": before,
        "data_version_after": after,
        "changed": report.changed,
        "files": report.files,
        "written": report.written,
        "metrics": report.metrics(),
        "ignored": dict(report.ignored),
        "skipped": dict(report.skipped),
        "problems": report.problems,
        "strategy": report.resolution.strategy,
        "kappa_kind": report.resolution.kappa_kind,
        "annotator_reliability": report.resolution.annotator_reliability,
        "review": json.loads(report.review.to_json(orient="records")),
    }


def export_uncertain_tasks(
    project_dir: str | Path,
    settings: Settings,
    out_dir: str | Path,
    count: int | None = None,
    method: str | None = None,
    include_labeled: bool = False,
) -> dict:
    """Label Studio tasks for the items the champion is least sure about, plus the labeling config."""
    from modelmill.data import to_tensors
    from modelmill.training import predict_proba
    from tasks.registry import CHAMPION, alias_version, load_version
    from tasks.tracking import connect

    cfg, name = settings.labels, settings.registry.model_name
    dataset = load_dataset(Path(project_dir, settings.data.dir))
    client, _ = connect(settings, project_dir)
    champion = alias_version(client, name, CHAMPION)
    if champion is None:
        raise ModelmillError(f"no '{CHAMPION}' version of model '{name}' yet; run `modelmill run` first")
    x, _ = to_tensors(dataset.items, dataset.schema)
    proba = predict_proba(load_version(name, champion.version), x).numpy()
    exclude = set() if include_labeled else set(dataset.labels[ID].astype(str))
    chosen = select_uncertain(
        dataset.items[ID].astype(str), proba, count or cfg.export_count, method or cfg.uncertainty, exclude
    )
    tasks = build_tasks(chosen, dataset.items, proba, dataset.schema, cfg, f"{name}/{champion.version}")
    out_dir = Path(out_dir)
    return {
        "tasks": str(write_tasks(out_dir / "tasks.json", tasks)),
        "labeling_config": str(
            write_labeling_config(out_dir / "labeling_config.xml", dataset.schema.classes, cfg)
        ),
        "count": len(tasks),
        "model_version": f"{name}/{champion.version}",
        "method": method or cfg.uncertainty,
    }
