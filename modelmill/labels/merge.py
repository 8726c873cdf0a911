"""Merge Label Studio exports into the data folder: ledger, canonical labels, archived exports.

data/annotations.parquet (the ledger) holds the latest version of every human annotation
ever imported, keyed by Label Studio annotation id, with the export it came from. Labels
are re-resolved for the items an import touches, from all their ledger votes, so re-exports
that repeat old annotations are neither double counted nor a change. Everything is parsed
and checked before the first byte is written; each file is written atomically, and a no-op
import writes nothing at all (same data version).
"""

from __future__ import annotations

import hashlib
import io
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modelmill.atomic import atomic_path, atomic_write_bytes
from modelmill.config import LabelsConfig
from modelmill.data import ID, LABEL, LABELS_FILE, SOURCE, load_dataset
from modelmill.labels.consensus import LOW, TIE, Resolution, resolve, strategy_named
from modelmill.labels.labelstudio import COLUMNS, USED, ParsedExport, read_export
from modelmill.labels.pseudonyms import scrubbed

LEDGER_FILE = "annotations.parquet"
EXPORTS_DIR = "exports"
SOURCE_PREFIX = "labelstudio"
_CONTENT = ["item_id", "annotator", "label", "updated_at", "preferred", "status"]


@dataclass
class ImportReport:
    files: list[dict[str, Any]]
    resolution: Resolution
    tasks: int = 0
    annotations: int = 0
    used: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    repeated: int = 0
    superseded: int = 0
    predictions: int = 0
    drafts: int = 0
    labels_new: int = 0
    labels_changed: int = 0
    labels_unchanged: int = 0
    written: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.written)

    @property
    def review(self) -> pd.DataFrame:
        return self.resolution.for_review

    def metrics(self) -> dict[str, float]:
        """Scalar figures (for MLflow metrics and the summary table)."""
        res = self.resolution
        figures: dict[str, float] = {
            "tasks": self.tasks,
            "annotations": self.annotations,
            "annotations_used": self.used,
            "annotations_ignored": sum(self.ignored.values()),
            "annotations_skipped": sum(self.skipped.values()),
            "annotations_repeated": self.repeated,
            "annotations_superseded": self.superseded,
            "predictions_not_used": self.predictions,
            "drafts_not_used": self.drafts,
            "labels_new": self.labels_new,
            "labels_changed": self.labels_changed,
            "labels_unchanged": self.labels_unchanged,
            "items_for_review": len(self.review),
            "conflicts": int(self.review["status"].isin([TIE, LOW]).sum()),
        }
        if res.kappa is not None:
            figures[f"kappa_{res.kappa_kind}"] = res.kappa
        if res.mean_agreement is not None:
            figures["mean_item_agreement"] = round(res.mean_agreement, 6)
        return {k: float(v) for k, v in figures.items()}

    def rows(self) -> list[dict[str, str]]:
        """The report as (what, count) rows for a table artifact."""
        rows = [{"what": k, "value": f"{v:g}"} for k, v in self.metrics().items()]
        rows += [{"what": f"ignored: {k}", "value": str(v)} for k, v in sorted(self.ignored.items())]
        rows += [{"what": f"skipped: {k}", "value": str(v)} for k, v in sorted(self.skipped.items())]
        rows += [
            {"what": f"reliability of annotator {a}", "value": f"{r:.3f}"}
            for a, r in sorted(self.resolution.annotator_reliability.items())
        ]
        return rows


def import_exports(
    data_dir: str | Path,
    paths: Sequence[str | Path],
    cfg: LabelsConfig,
    write: bool = True,
    pseudonym: Callable[[str], str] | None = None,
) -> ImportReport:
    """Parse every export, resolve the touched items, and (when write) update data_dir; with
    `pseudonym`, annotators are stored and reported by pseudonym (never an email)."""
    data_dir = Path(data_dir)
    dataset = load_dataset(data_dir)
    classes = dataset.schema.classes
    known = set(dataset.items[ID].astype(str))
    parsed = _unique(read_export(p, cfg, classes, known, pseudonym) for p in paths)
    new_rows = pd.concat([p.annotations for p in parsed], ignore_index=True)
    old_ledger = load_ledger(data_dir)
    ledger, repeated, superseded = merge_ledger(old_ledger, new_rows)
    votes = current_votes(ledger, set(new_rows["item_id"]))
    resolution = resolve(votes, classes, strategy_named(cfg.strategy), cfg.min_agreement, cfg.min_annotations)
    labels, counts = merge_labels(dataset.labels, resolution.labeled, votes)
    report = _report(parsed, resolution, repeated, superseded, counts)
    if write:
        report.written = _write(data_dir, parsed, ledger, old_ledger, labels, dataset.labels, pseudonym)
    return report


def _unique(parsed: Iterable[ParsedExport]) -> list[ParsedExport]:
    seen: dict[str, ParsedExport] = {}
    for export in parsed:
        seen.setdefault(export.sha256, export)
    return list(seen.values())


def load_ledger(data_dir: str | Path) -> pd.DataFrame:
    path = Path(data_dir) / LEDGER_FILE
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype=bool if c == "preferred" else str) for c in COLUMNS})
    return pd.read_parquet(path)


def merge_ledger(old: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """Latest version of each annotation (later updated_at wins; on a tie, a changed new row wins).

    Returns the ledger sorted by (item_id, annotation), the number of new rows that repeat
    ledger rows exactly, and the number of rows replaced by a later version.
    """
    new = new.drop_duplicates(["annotation", *_CONTENT])
    key = ["annotation", *_CONTENT]
    known = set(zip(*(old[c].tolist() for c in key), strict=True)) if len(old) else set()
    is_repeat = np.fromiter(
        (row in known for row in zip(*(new[c].tolist() for c in key), strict=True)), bool, len(new)
    )
    fresh = new[~is_repeat]
    combined = pd.concat([old.assign(_new=0), fresh.assign(_new=1)], ignore_index=True)
    combined = combined.sort_values(["annotation", "updated_at", "_new"], kind="stable")
    latest = combined.drop_duplicates("annotation", keep="last").drop(columns="_new")
    ledger = latest.sort_values(["item_id", "annotation"], kind="stable").reset_index(drop=True)
    return ledger[COLUMNS], int(is_repeat.sum()), len(combined) - len(latest)


def current_votes(ledger: pd.DataFrame, items: set[str]) -> pd.DataFrame:
    """Used annotations of the given items; an annotator's later annotation of an item replaces theirs."""
    votes = ledger[(ledger["status"] == USED).to_numpy() & _isin(ledger["item_id"], items)]
    votes = votes.sort_values(["updated_at", "annotation"], kind="stable")
    named = votes[votes["annotator"] != ""].drop_duplicates(["item_id", "annotator"], keep="last")
    return pd.concat([named, votes[votes["annotator"] == ""]]).sort_index()


def merge_labels(
    labels: pd.DataFrame, resolved: pd.DataFrame, votes: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Canonical labels with resolved items set; unchanged labels keep their row and source."""
    ids, names, sources = labels[ID].tolist(), labels[LABEL].tolist(), labels[SOURCE].tolist()
    current = dict(zip(ids, names, strict=True))
    decided = dict(zip(resolved[ID].tolist(), resolved[LABEL].tolist(), strict=True))
    added = sorted(i for i in decided if i not in current)
    changed = {i: label for i, label in decided.items() if i in current and current[i] != label}
    counts = {
        "new": len(added),
        "changed": len(changed),
        "unchanged": len(decided) - len(added) - len(changed),
    }
    if not added and not changed:
        return labels, counts
    source = provenance(votes[_isin(votes[ID], set(added) | set(changed))]).to_dict()
    for row, item in enumerate(ids):
        if item in changed:
            names[row], sources[row] = changed[item], source[item]
    merged = pd.DataFrame(
        {
            ID: ids + added,
            LABEL: names + [decided[i] for i in added],
            SOURCE: sources + [source[i] for i in added],
        }
    )
    return merged.astype({ID: str, LABEL: str, SOURCE: str}), counts


def _isin(column: pd.Series, values: set[str]) -> np.ndarray:
    """Membership as a bool array (plain set lookups: pandas' isin on arrow strings is ~8x slower)."""
    return np.fromiter((v in values for v in column.tolist()), bool, len(column))


def provenance(votes: pd.DataFrame) -> pd.Series:
    """item_id -> 'labelstudio:<export sha256[:12]>/<annotation set sha256[:12]>'.

    The export is the one of the item's latest vote; the annotation set hashes the sorted ids
    of the votes that decided the item (plain lists: a pandas groupby-apply is 20x slower here).
    """
    ordered = votes.sort_values([ID, "annotation"], kind="stable")
    items, keys = ordered[ID].tolist(), ordered["annotation"].tolist()
    stamps, exports = ordered["updated_at"].tolist(), ordered["export"].tolist()
    out: dict[str, str] = {}
    for item, group in groupby(range(len(items)), key=items.__getitem__):
        rows = list(group)
        latest = max(rows, key=lambda r: (stamps[r], keys[r]))
        annotation_set = hashlib.sha256("\n".join(keys[r] for r in rows).encode()).hexdigest()[:12]
        out[item] = f"{SOURCE_PREFIX}:{exports[latest][:12]}/{annotation_set}"
    return pd.Series(out, dtype=str)


def _report(
    parsed: list[ParsedExport], resolution: Resolution, repeated: int, superseded: int, counts: dict[str, int]
) -> ImportReport:
    report = ImportReport(
        files=[],
        resolution=resolution,
        repeated=repeated,
        superseded=superseded,
        labels_new=counts["new"],
        labels_changed=counts["changed"],
        labels_unchanged=counts["unchanged"],
    )
    for export in parsed:
        report.files.append(
            {
                "path": export.path,
                "sha256": export.sha256,
                "format": export.format,
                "tasks": export.tasks,
                "annotations_used": export.used,
            }
        )
        report.tasks += export.tasks
        report.used += export.used
        report.ignored.update(export.ignored)
        report.skipped.update(export.skipped)
        report.problems += [str(p) for p in export.problems]
        report.predictions += export.predictions
        report.drafts += export.drafts
    report.annotations = report.used + sum(report.ignored.values()) + sum(report.skipped.values())
    return report


def _write(
    data_dir: Path,
    parsed: list[ParsedExport],
    ledger: pd.DataFrame,
    old_ledger: pd.DataFrame,
    labels: pd.DataFrame,
    old_labels: pd.DataFrame,
    pseudonym: Callable[[str], str] | None = None,
) -> list[str]:
    # The archived export goes last: a kill before it leaves the export not archived (so still new);
    # the caller's journal entry covers the whole write until the data version is recorded.
    written = []
    if not _same(ledger, old_ledger):
        atomic_write_bytes(data_dir / LEDGER_FILE, parquet_bytes(ledger))
        written.append(LEDGER_FILE)
    if not _same(labels, old_labels):
        atomic_write_bytes(data_dir / LABELS_FILE, parquet_bytes(labels))
        written.append(LABELS_FILE)
    for export in parsed:
        target = archive_path(data_dir, export)
        if not target.exists():
            _atomic_copy(Path(export.path), target, pseudonym)
            written.append(str(target.relative_to(data_dir)))
    return written


def archived_hashes(data_dir: str | Path) -> set[str]:
    """Content hashes of the exports already archived (imported) under data/exports/."""
    return {p.stem for p in Path(data_dir, EXPORTS_DIR).glob("*.*")}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def archive_path(data_dir: Path, export: ParsedExport) -> Path:
    suffix = ".csv" if export.format == "csv" else ".json"
    return data_dir / EXPORTS_DIR / f"{export.sha256}{suffix}"


def _atomic_copy(source: Path, target: Path, pseudonym: Callable[[str], str] | None = None) -> None:
    with atomic_path(target) as tmp, tmp.open("wb") as out, source.open("rb") as src:
        if pseudonym is None:
            shutil.copyfileobj(src, out, 1 << 20)
        else:  # the archived copy keeps no email either
            for block in scrubbed(src, pseudonym):
                out.write(block)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Parquet without pandas metadata, so the bytes depend on the data only (as modelmill.data)."""
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False).replace_schema_metadata(
        None
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=False)
    return sink.getvalue()


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    if list(a.dtypes) == list(b.dtypes):
        return bool(a.reset_index(drop=True).equals(b.reset_index(drop=True)))
    return bool((a.reset_index(drop=True).astype(str) == b.reset_index(drop=True).astype(str)).all().all())
