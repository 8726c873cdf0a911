"""`modelmill data import FILE --text COL --target COL [--id COL]`: a CSV/Parquet file of texts as
the dataset (the text kind). A missing, blank or undecodable text is refused at import, naming
its row; over-long and duplicate texts are the expectation suite's to judge (validation: limits)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelmill.data import ID, LABEL, SOURCE, Dataset, write_dataset
from modelmill.errors import DataImportError
from modelmill.kinds.columns import RESERVED
from modelmill.kinds.text import text_schema

OPTIONS = ("--text", "--target", "--id")  # the order of read_text_table's columns


def read_text_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """The named columns as text (pandas object dtype, missing as None)."""
    try:
        if path.suffix.lower() == ".csv":
            names = _csv_header(path)
            _require(path, names, columns)
            table = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in columns}, include_columns=columns,
                    strings_can_be_null=True,
                ),
            )  # fmt: skip
        else:
            names = pq.ParquetFile(path).schema_arrow.names
            _require(path, names, columns)
            table = pq.read_table(path, columns=columns)
            table = pa.table({c: table.column(c).cast(pa.string()) for c in columns})
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        if "UTF8" in str(exc) or "utf8" in str(exc).lower():
            raise DataImportError(
                path, "not UTF-8 text (save the file as UTF-8)", row=_bad_utf8_row(path)
            ) from None
        raise DataImportError(path, f"not a readable {path.suffix[1:]} table ({exc})") from None
    return table.to_pandas(types_mapper=None).astype(object).where(lambda f: f.notna(), None)


def _csv_header(path: Path) -> list[str]:
    with open(path, "rb") as handle:
        first = handle.readline()
    if not first.strip():
        raise DataImportError(path, "empty file (no header, no rows)")
    return next(csv.reader([first.decode("utf-8", errors="replace").rstrip("\r\n")]))


def _require(path: Path, names: list[str], columns: list[str]) -> None:
    if len(set(names)) != len(names):
        raise DataImportError(
            path, f"duplicate column names {sorted({n for n in names if names.count(n) > 1})}"
        )
    for column in columns:
        if column not in names:
            option = OPTIONS[columns.index(column)]
            raise DataImportError(path, f"no column '{column}' ({option}); columns: {names[:20]}")
        if column in RESERVED:
            raise DataImportError(path, f"'{column}' is reserved: rename the column", column=column)


def _bad_utf8_row(path: Path) -> int | None:
    """The data row (1 = the first after the header) of the first line that is not UTF-8."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def text_dataset(
    path: Path, frame: pd.DataFrame, name: str, text: str, target: str, id_column: str | None
) -> Dataset:
    """Items (item_id + the text column) and labels of the rows with a target; bad rows refused."""
    if frame.empty:
        raise DataImportError(path, "empty file (a header but no rows)")
    blank = frame[text].isna() | (frame[text].fillna("").astype(str).str.strip() == "")
    if blank.any():
        row = int(blank.to_numpy().nonzero()[0][0]) + 1
        raise DataImportError(path, "missing or blank text", row=row, column=text)
    ids = _ids(path, frame, id_column)
    items = pd.DataFrame({ID: ids, text: frame[text].astype(str).to_numpy()})
    labeled = frame[target].notna().to_numpy()
    labels = pd.DataFrame({ID: ids[labeled], LABEL: frame[target][labeled].astype(str).to_numpy()})
    labels[SOURCE] = f"import:{path.name}"
    classes = tuple(sorted(labels[LABEL].unique()))
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "no labeled row"
        raise DataImportError(
            path, f"{found} in the target column: at least two classes needed", column=target
        )
    schema = text_schema(
        name,
        classes,
        items[text],
        text,
        target=target,
        id_column=id_column,
        description=f"imported from {path.name}",
    )
    return Dataset(schema, items, labels)


def _ids(path: Path, frame: pd.DataFrame, id_column: str | None) -> np.ndarray:
    if id_column is None:
        return np.array([f"row-{i + 1:08d}" for i in range(len(frame))], dtype=object)
    ids = frame[id_column]
    if ids.isna().any():
        raise DataImportError(
            path, "missing id", row=int(ids.isna().to_numpy().nonzero()[0][0]) + 1, column=id_column
        )
    dupes = ids.duplicated()
    if dupes.any():
        row = int(dupes.to_numpy().nonzero()[0][0])
        raise DataImportError(path, f"duplicate id {ids.iloc[row]!r}", row=row + 1, column=id_column)
    return ids.astype(str).to_numpy()


def import_texts(
    path: Path, staging: Path, name: str, text: str, target: str, id_column: str | None
) -> tuple[Dataset, dict[str, str]]:
    """Read, check and write the dataset into staging; returns it and the columns' roles."""
    columns = [text, target, *([id_column] if id_column else [])]
    if len(set(columns)) != len(columns):
        raise DataImportError(path, "--text, --target and --id must name different columns")
    dataset = text_dataset(path, read_text_table(path, columns), name, text, target, id_column)
    write_dataset(staging, dataset)
    return dataset, {text: "text", target: "target", **({id_column: "id"} if id_column else {})}
