"""The dataset's expectation suite (Great Expectations 1.x) and a readable report of its result.

The suite runs over the labeled rows (labels left-joined to items) plus the kind's derived
per-row columns: expectations on ids, labels and row count are shared; the kind adds its own
(image: pixel columns, nulls and range per row; tabular: column types, ranges, categories, nulls).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from modelmill.config import ValidationConfig
from modelmill.data import ID, LABEL, Dataset
from modelmill.errors import ValidationFailed
from modelmill.kinds import kind_of

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.data_context import AbstractDataContext

SUITE_NAME = "modelmill-dataset"


@dataclass
class FailedExpectation:
    expectation: str
    column: str | None
    description: str
    unexpected_count: int | None
    examples: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        where = f" on column '{self.column}'" if self.column else ""
        count = f" ({self.unexpected_count} rows)" if self.unexpected_count else ""
        rows = "; ".join(", ".join(f"{k}={v}" for k, v in ex.items()) for ex in self.examples)
        return f"- {self.expectation}{where}{count}: {self.description}" + (f" e.g. {rows}" if rows else "")


@dataclass
class ValidationReport:
    success: bool
    evaluated: int
    failed: list[FailedExpectation]
    result: dict[str, Any]
    docs_index: Path | None = None

    def summary(self) -> str:
        if self.success:
            return f"all {self.evaluated} expectations met"
        head = f"{len(self.failed)} of {self.evaluated} expectations failed:"
        return "\n".join([head, *(f.line() for f in self.failed)])

    def raise_for_failure(self) -> None:
        if not self.success:
            raise ValidationFailed("dataset validation failed: " + self.summary(), report=self)


def validation_frame(dataset: Dataset) -> pd.DataFrame:
    """Labels left-joined to items (a label for an unknown item shows as missing features),
    plus the kind's derived per-row columns."""
    frame = dataset.labels[[ID, LABEL]].merge(dataset.items, on=ID, how="left")
    return kind_of(dataset.schema).derive_columns(frame, dataset.schema)


def build_suite(dataset: Dataset, cfg: ValidationConfig) -> gx.ExpectationSuite:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    schema = dataset.schema
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    for expectation in (
        gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows),
        gxe.ExpectColumnValuesToNotBeNull(column=ID),
        gxe.ExpectColumnValuesToBeUnique(column=ID),
        gxe.ExpectColumnValuesToNotBeNull(column=LABEL),
        gxe.ExpectColumnValuesToBeInSet(column=LABEL, value_set=list(schema.classes)),
        gxe.ExpectColumnDistinctValuesToContainSet(column=LABEL, value_set=list(schema.classes)),
        *kind_of(schema).expectations(schema, cfg),
    ):
        suite.add_expectation(expectation)
    return suite


def validate(dataset: Dataset, cfg: ValidationConfig, docs_dir: str | Path | None = None) -> ValidationReport:
    """Run the suite; with docs_dir, a file-backed GE context there also builds Data Docs."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    frame = validation_frame(dataset)
    context = _context(docs_dir)
    source = context.data_sources.add_or_update_pandas(name="modelmill")
    asset = source.add_dataframe_asset(name=dataset.schema.name)
    batch = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add_or_update(build_suite(dataset, cfg))
    import great_expectations as gx

    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name="dataset", data=batch, suite=suite)
    )
    result_format = {
        "result_format": "COMPLETE",
        "unexpected_index_column_names": [ID],
        "partial_unexpected_count": max(cfg.failed_rows_shown, 1),
    }
    docs_index = None
    if docs_dir is not None:
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name="dataset",
                validation_definitions=[definition],
                result_format=result_format,
                actions=[gx.checkpoint.UpdateDataDocsAction(name="docs")],
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": frame})
        result = next(iter(run.run_results.values()))
        docs_index = next(Path(docs_dir).rglob("data_docs/local_site/index.html"), None)
    else:
        result = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)
    return _report(result.to_json_dict(), frame, cfg, docs_index, kind_of(dataset.schema).DESCRIPTIONS)


def _context(docs_dir: str | Path | None) -> AbstractDataContext:
    import great_expectations as gx

    context: AbstractDataContext
    if docs_dir is None:
        context = gx.get_context(mode="ephemeral")
    else:
        context = gx.get_context(mode="file", project_root_dir=str(docs_dir))
    # a plain dict works (ProgressBarsConfig is a DictDot) and serializes as before
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}  # type: ignore[assignment]
    return context


def _report(
    result: dict[str, Any],
    frame: pd.DataFrame,
    cfg: ValidationConfig,
    docs_index: Path | None,
    descriptions: dict[str, str],
) -> ValidationReport:
    failed: list[FailedExpectation] = []
    for res in result["results"]:
        if res["success"]:
            continue
        config = res["expectation_config"]
        kwargs = config.get("kwargs", {})
        column = kwargs.get("column")
        detail = res.get("result") or {}
        examples = _examples(detail, column, frame, cfg.failed_rows_shown)
        failed.append(
            FailedExpectation(
                expectation=config["type"],
                column=column,
                description=descriptions.get(column) or _describe(config["type"], column, kwargs, detail),
                unexpected_count=detail.get("unexpected_count"),
                examples=examples,
            )
        )
    stats = result.get("statistics", {})
    return ValidationReport(
        bool(result["success"]), int(stats.get("evaluated_expectations", 0)), failed, result, docs_index
    )


def _describe(kind: str, column: str | None, kwargs: dict[str, Any], detail: dict[str, Any]) -> str:
    if kind == "expect_table_columns_to_match_set":
        observed = set(detail.get("observed_value") or [])
        expected = set(kwargs.get("column_set") or [])
        missing, extra = sorted(expected - observed), sorted(observed - expected)
        return f"columns missing: {missing[:10]}, unexpected: {extra[:10]}"
    if kind == "expect_table_row_count_to_be_between":
        return f"{detail.get('observed_value')} labeled rows, at least {kwargs.get('min_value')} required"
    if kind == "expect_column_distinct_values_to_contain_set":
        missing = sorted(set(kwargs.get("value_set", [])) - set(detail.get("observed_value") or []))
        return f"classes with no labeled row: {missing}"
    if kind == "expect_column_values_to_be_in_set" and column == LABEL:
        return f"values outside the class set {kwargs.get('value_set')}"
    if kind == "expect_column_values_to_be_in_set":
        return f"categories not in the schema {cast(list[Any], kwargs.get('value_set'))[:20]}"
    if kind == "expect_column_values_to_be_between":
        return f"values outside [{kwargs.get('min_value')}, {kwargs.get('max_value')}] (the schema's range)"
    if kind == "expect_column_values_to_be_in_type_list":
        return f"not a numeric column (dtype {detail.get('observed_value')})"
    if kind == "expect_column_values_to_be_unique":
        return "duplicate item ids"
    if kind == "expect_column_values_to_not_be_null" and kwargs.get("mostly", 1) < 1:
        return f"more than {1 - kwargs['mostly']:.0%} of the values missing"
    if kind == "expect_column_values_to_not_be_null":
        return "missing values"
    return json.dumps({k: v for k, v in kwargs.items() if k != "batch_id"}, default=str)[:200]


def _examples(
    detail: dict[str, Any], column: str | None, frame: pd.DataFrame, limit: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for entry in (detail.get("partial_unexpected_index_list") or [])[:limit]:
        item_id = entry.get(ID) if isinstance(entry, dict) else None
        example = {ID: item_id}
        if column and column != ID and item_id is not None:
            match = frame.loc[frame[ID] == item_id, column]
            if len(match):
                example[column] = match.iloc[0]
        rows.append(example)
    if not rows and detail.get("partial_unexpected_list"):
        rows = [{column or "value": v} for v in detail["partial_unexpected_list"][:limit]]
    return rows
