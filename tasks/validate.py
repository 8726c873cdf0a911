"""Validate stage: the dataset's Great Expectations suite; the result and Data Docs go to MLflow,
and the validated dataset is recorded as the run's MLflow input."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger

from modelmill.data import load_dataset
from modelmill.validation import validate
from tasks.context import RunContext
from tasks.progress import stage


@stage("validate")
def validate_data(ctx: RunContext, data_version: str) -> dict[str, int]:
    """Run the suite; log the result JSON, Data Docs HTML and a summary; fail on any miss."""
    logger = get_run_logger()
    dataset = load_dataset(ctx.data_dir)
    docs_dir = Path(ctx.work_dir, "gx")
    report = validate(dataset, ctx.settings.validation, docs_dir=docs_dir)
    tracker = ctx.tracker()
    tracker.log_dict(report.result, "validation/result.json")
    tracker.log_text(report.summary() + "\n", "validation/summary.txt")
    if report.docs_index is not None:
        tracker.log_artifact(report.docs_index.parent, "validation/data_docs")
    tracker.set_tags({"validation": "passed" if report.success else "failed"})
    tracker.log_metrics({"validation_failed_expectations": len(report.failed)})
    if report.success:
        logger.info("validation: %s", report.summary())
    else:
        logger.error("validation: %s", report.summary())
    report.raise_for_failure()
    tracker.log_dataset(
        dataset.labeled(),
        name=dataset.schema.name,
        digest=data_version,
        context="training",
        source=str(ctx.data_dir.resolve()),
    )
    return {"evaluated": report.evaluated, "failed": 0}
