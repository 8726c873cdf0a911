"""Label tasks: Label Studio exports -> a new data version (with its own MLflow run); tasks back out."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact

from modelmill import journal
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
from modelmill.labels.pseudonyms import load_key, pseudonymizer
from tasks.data import data_version, push_data, version_data
from tasks.progress import stage
from tasks.tracking import Tracker

EXPORT_SUFFIXES = (".json", ".csv")
REVIEW_ROWS_SHOWN = 200
IMPORT_OP = "import-labels"


def inbox_exports(project_dir: str | Path, settings: Settings) -> list[str]:
    """Exports in labels.inbox whose content is not archived under data/exports/ yet."""
    inbox = Path(project_dir, settings.labels.inbox)
    if not inbox.is_dir():
        return []
    done = archived_hashes(Path(project_dir, settings.data.dir)) - pending_exports(project_dir)
    candidates = sorted(p for p in inbox.iterdir() if p.is_file() and p.suffix.lower() in EXPORT_SUFFIXES)
    return [str(p) for p in candidates if file_sha256(p) not in done]


ANNOTATOR_KEY_FILE = ".modelmill/annotator.key"


def pending_exports(project_dir: str | Path) -> set[str]:
    """Hashes of exports whose import began but was not recorded as a data version (journal)."""
    return {
        sha
        for entry in journal.pending(project_dir)
        if entry.op == IMPORT_OP
        for sha in entry.details["exports"]
    }


@stage("import-label-exports")
def merge_exports(project_dir: str, settings: Settings, paths: list[str]) -> ImportReport:
    """Parse, resolve and merge the exports into data/ (no retries: a bad export stays bad)."""
    logger = get_run_logger()
    before = data_version(project_dir, settings)
    exports = [file_sha256(p) for p in paths]
    journal.begin(
        project_dir, IMPORT_OP, before, exports=exports, paths=paths, labels=settings.labels.model_dump()
    )
    try:
        key = load_key(Path(project_dir, ANNOTATOR_KEY_FILE))  # out of git: .modelmill/ is ignored
        report = import_exports(
            Path(project_dir, settings.data.dir), paths, settings.labels, pseudonym=pseudonymizer(key)
        )
    except ModelmillError:  # refused before the first write: data/ is untouched
        journal.end(project_dir, IMPORT_OP)
        raise
    if not report.changed:
        journal.end(project_dir, IMPORT_OP)
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
    journal.end(project_dir, IMPORT_OP)  # last: until here, the next writer finishes this import
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


TABLE_FIELD = "row"  # task data key of a tabular item's {column: value} table
TEXT_FIELD = "text"  # task data key of a text item's text


def export_uncertain_tasks(
    project_dir: str | Path,
    settings: Settings,
    out_dir: str | Path,
    count: int | None = None,
    method: str | None = None,
    include_labeled: bool = False,
) -> dict:
    """Label Studio tasks for the items the champion is least sure about, plus the labeling config."""
    from modelmill.atomic import atomic_write_bytes
    from modelmill.data import to_tensors
    from modelmill.kinds import kind_of, preprocessor_from_state
    from modelmill.training import predict_proba
    from tasks.evaluate import logged_preprocessor
    from tasks.registry import CHAMPION, alias_version, load_version
    from tasks.tracking import connect

    cfg, name = settings.labels, settings.registry.model_name
    dataset = load_dataset(Path(project_dir, settings.data.dir))
    client, _ = connect(settings, project_dir)
    champion = alias_version(client, name, CHAMPION)
    if champion is None:
        raise ModelmillError(f"no '{CHAMPION}' version of model '{name}' yet; run `modelmill run` first")
    state = logged_preprocessor(champion.run_id)  # the champion's own, fitted on its train split
    x = (
        preprocessor_from_state(state).transform(dataset.items)
        if state is not None
        else to_tensors(dataset.items, dataset.schema)[0]
    )
    proba = predict_proba(load_version(name, champion.version), x).numpy()
    exclude = set() if include_labeled else set(dataset.labels[ID].astype(str))
    chosen = select_uncertain(
        dataset.items[ID].astype(str), proba, count or cfg.export_count, method or cfg.uncertainty, exclude
    )
    schema, out_dir = dataset.schema, Path(out_dir)
    if schema.kind == "image":
        tasks = build_tasks(chosen, dataset.items, proba, schema, cfg, f"{name}/{champion.version}")
        config = write_labeling_config(out_dir / "labeling_config.xml", schema.classes, cfg)
    else:  # the kind's view of the item (tabular: a <Table> of the row)
        kind = kind_of(schema)
        value_field = TEXT_FIELD if schema.kind == "text" else TABLE_FIELD
        if schema.kind == "text" and cfg.to_name == "image":  # the default name, for a <Text> tag
            cfg = cfg.model_copy(update={"to_name": TEXT_FIELD})
        data = kind.task_data(dataset.items.iloc[chosen["row"]], schema, value_field, cfg.item_id_field)
        tasks = build_tasks(chosen, dataset.items, proba, schema, cfg, f"{name}/{champion.version}", data)
        config = out_dir / "labeling_config.xml"
        out_dir.mkdir(parents=True, exist_ok=True)
        xml = kind.labeling_config(schema.classes, cfg.from_name, cfg.to_name, value_field)
        atomic_write_bytes(config, xml.encode())
    return {
        "tasks": str(write_tasks(out_dir / "tasks.json", tasks)),
        "labeling_config": str(config),
        "count": len(tasks),
        "model_version": f"{name}/{champion.version}",
        "method": method or cfg.uncertainty,
    }
