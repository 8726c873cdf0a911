"""Label Studio exports (JSON, JSON-MIN, CSV) read as a stream into one annotations frame.

Each human annotation becomes one row with its provenance (export hash, task, annotation
key). Predictions and drafts are counted, never taken as labels. Rows that cannot be used
are either ignored by rule (cancelled, rejected in review, no choice) or skipped as
problems (unknown item id, label outside the class set, several choices); a file that is
not an export of this kind is refused as a whole (ExportFormatError).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import pandas as pd

from modelmill.config import LabelsConfig
from modelmill.errors import ExportFormatError
from modelmill.labels.jsonstream import JSONListStream, JSONStreamError

COLUMNS = [
    "annotation",
    "item_id",
    "annotator",
    "label",
    "updated_at",
    "preferred",
    "status",
    "task",
    "export",
]
USED, CANCELLED, REJECTED = "used", "cancelled", "rejected"
PROBLEMS_KEPT = 50  # row problems listed in full in a report; the rest are counted


@dataclass(frozen=True)
class RowProblem:
    path: str
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}, {self.where}: {self.reason}"


@dataclass
class ParsedExport:
    path: str
    sha256: str
    format: str
    tasks: int = 0
    annotations: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COLUMNS))
    ignored: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    problems: list[RowProblem] = field(default_factory=list)
    predictions: int = 0
    drafts: int = 0

    @property
    def used(self) -> int:
        return int((self.annotations["status"] == USED).sum())


class _Collector:
    """Accumulates rows column-wise (cheap for 10^5-10^6 rows) and counts what was left out."""

    def __init__(
        self,
        path: str,
        cfg: LabelsConfig,
        classes: Iterable[str],
        known_ids: set[str] | None,
        pseudonym: Callable[[str], str] | None = None,
    ):
        self.pseudonym = pseudonym
        self.path, self.cfg = path, cfg
        self.classes, self.known_ids = set(classes), known_ids
        self.rows: list[tuple[str, str, str, str, str, bool, str, str]] = []
        self.ignored: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.problems: list[RowProblem] = []
        self.other_kinds: dict[str, str] = {}  # result kind -> first place seen
        self.predictions = self.drafts = 0
        self.row_tasks: set[str] = set()  # JSON-MIN and CSV: one row per annotation; count distinct tasks

    def skip(self, where: str, reason: str, kind: str, count: int = 1) -> None:
        self.skipped[kind] += count
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(RowProblem(self.path, where, reason))

    def item_ok(self, item_id: Any, where: str, annotations: int) -> bool:
        if annotations == 0:
            return True
        if item_id is None or item_id == "":
            self.skip(where, f"no '{self.cfg.item_id_field}' in task data", "missing item id", annotations)
            return False
        if self.known_ids is not None and str(item_id) not in self.known_ids:
            self.skip(where, f"unknown item id '{item_id}'", "unknown item id", annotations)
            return False
        return True

    def label_ok(self, choices: list[Any], where: str) -> str | None:
        if len(choices) != 1:
            self.skip(where, f"{len(choices)} choices {choices!r}; expected exactly one", "several choices")
            return None
        label = str(choices[0])
        if label not in self.classes:
            self.skip(where, f"label '{label}' is not one of the classes", "label outside class set")
            return None
        return label

    def identity(self, completed_by: object) -> str:
        """The annotator as stored: their pseudonym when the import has a key (never an email)."""
        raw = _annotator(completed_by)
        return self.pseudonym(raw) if self.pseudonym and raw else raw

    def add(
        self,
        annotation: str,
        item_id: str,
        annotator: str,
        label: str,
        updated_at: str,
        preferred: bool,
        status: str,
        task: str,
    ) -> None:
        self.rows.append((annotation, item_id, annotator, label, updated_at, preferred, status, task))

    def frame(self, sha256: str) -> pd.DataFrame:
        frame = pd.DataFrame.from_records(self.rows, columns=COLUMNS[:-1], nrows=len(self.rows))
        frame["preferred"] = frame["preferred"].astype(bool)
        frame["export"] = sha256
        return frame.astype({c: str for c in COLUMNS if c != "preferred"})


class _HashingReader(io.RawIOBase):
    """A binary file wrapper that hashes what is read, so the export is read once."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.digest = raw, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        self.digest.update(data)
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data

    def finish(self) -> str:
        while chunk := self.raw.read(1 << 20):
            self.digest.update(chunk)
        return self.digest.hexdigest()


def read_export(
    path: str | Path,
    cfg: LabelsConfig,
    classes: Iterable[str],
    known_ids: set[str] | None = None,
    pseudonym: Callable[[str], str] | None = None,
) -> ParsedExport:
    """Parse one export file; raises ExportFormatError when the file as a whole is unusable.
    With `pseudonym` (modelmill.labels.pseudonyms), annotators are stored as pseudonyms."""
    path = Path(path)
    _check_file(path, cfg)
    collector = _Collector(str(path), cfg, classes, known_ids, pseudonym)
    with path.open("rb") as raw:
        reader = _HashingReader(raw)
        if path.suffix.lower() == ".csv":
            kind, tasks = "csv", _read_csv(reader, collector)
        else:
            kind, tasks = _read_json(reader, collector)
        sha256 = reader.finish()
    if kind != "json" and tasks:
        tasks = len(collector.row_tasks) or tasks
    parsed = ParsedExport(
        path=str(path),
        sha256=sha256,
        format=kind,
        tasks=tasks,
        annotations=collector.frame(sha256),
        ignored=collector.ignored,
        skipped=collector.skipped,
        problems=collector.problems,
        predictions=collector.predictions,
        drafts=collector.drafts,
    )
    _check_usable(parsed, collector, cfg)
    return parsed


def _check_file(path: Path, cfg: LabelsConfig) -> None:
    if not path.is_file():
        raise ExportFormatError(path, None, "no such file")
    size_mb = path.stat().st_size / 2**20
    if size_mb > cfg.max_export_mb:
        raise ExportFormatError(
            path, None, f"{size_mb:.0f} MB is above labels.max_export_mb={cfg.max_export_mb:g}"
        )
    if size_mb == 0:
        raise ExportFormatError(path, None, "empty file (an export holds at least one task)")


def _check_usable(parsed: ParsedExport, collector: _Collector, cfg: LabelsConfig) -> None:
    if parsed.tasks == 0:
        raise ExportFormatError(parsed.path, None, "empty export: no tasks")
    if collector.other_kinds and not len(parsed.annotations):
        kind, where = next(iter(collector.other_kinds.items()))
        raise ExportFormatError(
            parsed.path,
            where,
            f"export of another kind: found {kind}, expected 'choices' results of '{cfg.from_name}'",
        )
    if not len(parsed.annotations) and parsed.problems:
        raise ExportFormatError(
            parsed.path,
            parsed.problems[0].where,
            f"no usable annotation; first problem: {parsed.problems[0].reason}",
        )
    if not len(parsed.annotations) and not sum(parsed.ignored.values()):
        raise ExportFormatError(
            parsed.path,
            None,
            f"no human annotations in {parsed.tasks} tasks "
            f"({parsed.predictions} predictions, {parsed.drafts} drafts)",
        )
    if cfg.strict and parsed.problems:
        raise ExportFormatError(
            parsed.path,
            parsed.problems[0].where,
            f"{parsed.problems[0].reason} (labels.strict: no row may be skipped)",
        )


# ---- JSON and JSON-MIN -------------------------------------------------------------------


def _read_json(reader: _HashingReader, collector: _Collector) -> tuple[str, int]:
    text = io.TextIOWrapper(io.BufferedReader(reader, buffer_size=1 << 20), encoding="utf-8-sig")
    kind, tasks = "json", 0
    try:
        for index, task in enumerate(JSONListStream(text)):
            where = f"task #{index}"
            if not isinstance(task, dict):
                raise ExportFormatError(
                    collector.path, where, f"expected a task object, got {type(task).__name__}"
                )
            if index == 0:
                kind = "json" if "data" in task or "annotations" in task else "json-min"
            if kind == "json":
                _full_task(task, where, collector)
            else:
                _min_row(task, where, collector)
            tasks = index + 1
    except JSONStreamError as exc:
        raise ExportFormatError(collector.path, exc.where, exc.problem) from None
    except UnicodeDecodeError:
        raise ExportFormatError(
            collector.path, f"after task #{tasks - 1}" if tasks else "byte 0", "not UTF-8 text"
        ) from None
    return kind, tasks


def _full_task(task: dict[str, Any], where: str, collector: _Collector) -> None:
    data = task.get("data")
    if not isinstance(data, dict):
        raise ExportFormatError(collector.path, where, "task has no 'data' object")
    where = f"{where} (id {task.get('id')})"
    annotations = _list(task, "annotations", where, collector)
    collector.predictions += len(_list(task, "predictions", where, collector))
    collector.drafts += len(_list(task, "drafts", where, collector))
    item_id = data.get(collector.cfg.item_id_field)
    if not collector.item_ok(item_id, where, len(annotations)):
        return
    for ann in annotations:
        if isinstance(ann, dict):
            _full_annotation(ann, str(item_id), task, where, collector)
        else:
            collector.skip(where, "annotation is not an object", "malformed annotation")


def _full_annotation(
    ann: dict[str, Any], item_id: str, task: dict[str, Any], where: str, collector: _Collector
) -> None:
    annotator = collector.identity(ann.get("completed_by"))
    where = f"{where}, annotation {ann.get('id')}"
    status, review = USED, (_review(ann) if "reviews" in ann or "review" in ann else None)
    label = ""
    if ann.get("was_cancelled"):
        status = CANCELLED
    elif review is False:
        status = REJECTED
    else:
        choices = _choices(_list(ann, "result", where, collector), where, collector)
        if choices is None:
            return
        chosen = collector.label_ok(choices, where)
        if chosen is None:
            return
        label = chosen
    if status != USED:
        collector.ignored["cancelled" if status == CANCELLED else "rejected in review"] += 1
    collector.add(
        annotation=_key(ann.get("id"), task.get("id"), annotator),
        item_id=item_id,
        annotator=annotator,
        label=label,
        updated_at=str(ann.get("updated_at") or ann.get("created_at") or ""),
        preferred=bool(ann.get("ground_truth")) or review is True,
        status=status,
        task=str(task.get("id")),
    )


def _list(obj: dict[str, Any], key: str, where: str, collector: _Collector) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ExportFormatError(collector.path, where, f"'{key}' is {type(value).__name__}, expected a list")
    return value


def _choices(results: list[Any], where: str, collector: _Collector) -> list[Any] | None:
    """The choices of the configured from_name, or None (ignored, other kinds remembered)."""
    cfg = collector.cfg
    for result in results:
        if not isinstance(result, dict):
            continue
        if result.get("type") == "choices" and result.get("from_name") == cfg.from_name:
            value = result.get("value") or {}
            choices = value.get("choices") if isinstance(value, dict) else None
            if isinstance(choices, list):
                return choices
        kind = f"'{result.get('type')}' results of '{result.get('from_name')}'"
        collector.other_kinds.setdefault(kind, where)
    collector.ignored[f"no choice of '{cfg.from_name}'"] += 1
    return None


def _review(ann: dict[str, Any]) -> bool | None:
    """True when the latest review accepted the annotation, False when it rejected it."""
    reviews = ann.get("reviews") or ([ann["review"]] if isinstance(ann.get("review"), dict) else [])
    reviews = reviews if isinstance(reviews, list) else []
    reviews = [r for r in reviews if isinstance(r, dict) and isinstance(r.get("accepted"), bool)]
    if not reviews:
        return None
    latest = max(reviews, key=lambda r: str(r.get("updated_at") or r.get("created_at") or ""))
    return cast(bool, latest["accepted"])


def _annotator(completed_by: Any) -> str:
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id", completed_by.get("email"))
    return "" if completed_by is None else str(completed_by)


def _key(annotation_id: Any, task_id: Any, annotator: str) -> str:
    """Annotation ids are unique within a Label Studio instance; without one, task + annotator."""
    if annotation_id not in (None, ""):
        return str(annotation_id)
    return f"task{task_id}/{annotator or '?'}"


def _min_row(row: dict[str, Any], where: str, collector: _Collector) -> None:
    """One JSON-MIN (or CSV) row: task data fields flattened, one annotation per row."""
    cfg = collector.cfg
    where = f"{where} (id {row.get('id')})"
    collector.row_tasks.add(str(row.get("id", where)))
    value = row.get(cfg.from_name)
    if value in (None, ""):
        collector.ignored[f"no choice of '{cfg.from_name}'"] += 1
        return
    if not collector.item_ok(row.get(cfg.item_id_field), where, 1):
        return
    if isinstance(value, str):
        choices = [value]
    elif isinstance(value, dict) and isinstance(value.get("choices"), list):
        choices = value["choices"]
    else:
        kind = f"'{type(value).__name__}' values in column '{cfg.from_name}'"
        if isinstance(value, list) and value and isinstance(value[0], dict):
            kind = f"{sorted(k for k in value[0] if k.endswith('labels')) or 'region'} results"
        collector.other_kinds.setdefault(kind, where)
        return
    label = collector.label_ok(choices, where)
    if label is None:
        return
    annotator = collector.identity(row.get("annotator"))
    collector.add(
        annotation=_key(row.get("annotation_id"), row.get("id"), annotator),
        item_id=str(row[cfg.item_id_field]),
        annotator=annotator,
        label=label,
        updated_at=str(row.get("updated_at") or row.get("created_at") or ""),
        preferred=False,
        status=USED,
        task=str(row.get("id")),
    )


# ---- CSV -------------------------------------------------------------------------------------


def _read_csv(reader: _HashingReader, collector: _Collector) -> int:
    text = io.TextIOWrapper(io.BufferedReader(reader, buffer_size=1 << 16), encoding="utf-8-sig", newline="")
    rows = csv.DictReader(text)
    tasks = 0
    try:
        header = rows.fieldnames or []
        for column in (collector.cfg.item_id_field, collector.cfg.from_name):
            if header and column not in header:
                raise ExportFormatError(collector.path, "row 1 (header)", f"no column '{column}'")
        for row in _csv_rows(rows):
            tasks += 1
            _min_row(row, f"row {rows.line_num}", collector)
    except csv.Error as exc:
        raise ExportFormatError(collector.path, f"row {rows.line_num}", f"not valid CSV ({exc})") from None
    except UnicodeDecodeError:
        raise ExportFormatError(collector.path, f"near row {rows.line_num + 1}", "not UTF-8 text") from None
    return tasks


def _csv_rows(rows: csv.DictReader[str]) -> Iterator[dict[str, Any]]:
    for row in rows:
        for key, cell in row.items():
            if isinstance(cell, str) and cell[:1] in "[{":
                with contextlib.suppress(ValueError):
                    row[key] = json.loads(cell)
        yield row
