"""`modelmill data import`: a team's own CSV/Parquet table or image folder as the dataset.

Tables stream through pyarrow (one block at a time): numeric and categorical columns are
inferred from the first block and recorded with their ranges and categories. Image folders
hold one subfolder per class of PNG/JPEG files, resized with Pillow to the configured size.
Everything is staged beside the data folder and moved in only when the whole input is good:
bad input leaves the data folder as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelmill.data import ID, ITEMS_FILE, LABEL, LABELS_FILE, SCHEMA_FILE, SOURCE, Dataset, write_dataset
from modelmill.errors import DataImportError
from modelmill.kinds.columns import RESERVED
from modelmill.kinds.image import ImageSchema
from modelmill.kinds.tabular import MAX_CATEGORIES, Column, TabularSchema

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
BLOCK_BYTES = 16 << 20
NUMERIC_SHARE = 0.9  # a text column whose first block parses as numbers this often is numeric


@dataclass(frozen=True)
class ImportResult:
    kind: str
    name: str
    items: int
    labeled: int
    classes: tuple[str, ...]
    columns: dict[str, str]


def detect_kind(path: Path) -> str:
    if path.is_dir():
        return "image"
    if path.suffix.lower() in TABLE_FORMATS:
        return "tabular"
    raise DataImportError(path, "not a CSV/Parquet file or a folder of class subfolders")


def import_data(
    path: str | Path,
    data_dir: str | Path,
    kind: str | None = None,
    target: str | None = None,
    id_column: str | None = None,
    name: str | None = None,
    image_size: tuple[int, int] = (32, 32),
    text: str | None = None,
) -> ImportResult:
    """Import `path` as the dataset in data_dir (replacing its schema, items and labels)."""
    path, data_dir = Path(path), Path(data_dir)
    if not path.exists():
        raise DataImportError(path, "no such file or folder")
    found = detect_kind(path)
    if text is not None and found == "tabular":  # a table with a text column: the text kind
        found = "text"
    if kind is not None and kind != found:
        raise DataImportError(path, f"--kind {kind} does not fit: this looks like {found} data")
    name = name or path.stem.replace(" ", "_")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.import-", dir=data_dir.parent))
    try:
        if found == "image":
            result = _import_images(path, staging, name, image_size)
        elif found == "text":
            result = _import_text_table(path, staging, name, text or "text", target or "target", id_column)
        else:
            result = _import_table(path, staging, name, target or "target", id_column)
        _install(staging, data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _install(staging: Path, data_dir: Path) -> None:
    """Move the staged files in, the schema last (a reader sees the old or the new schema)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for file in (ITEMS_FILE, LABELS_FILE, SCHEMA_FILE):
        os.replace(staging / file, data_dir / file)


# --- tables ------------------------------------------------------------------------------


def _table_batches(path: Path, types: dict[str, pa.DataType] | None = None) -> Iterator[pa.RecordBatch]:
    if TABLE_FORMATS[path.suffix.lower()] == "parquet":
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataImportError(path, f"not a readable Parquet file ({exc})") from None
        for batch in parquet.iter_batches(batch_size=65536):
            yield batch.cast(pa.schema([(f.name, types[f.name]) for f in batch.schema])) if types else batch
        return
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
            convert_options=pacsv.ConvertOptions(column_types=types or {}, strings_can_be_null=True),
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise DataImportError(path, "empty file (no header, no rows)") from None
        raise DataImportError(path, f"not a readable CSV file ({exc})") from None
    yield from reader


def _first_block(path: Path) -> pa.RecordBatch:
    try:
        return next(iter(_table_batches(path)))
    except StopIteration:
        raise DataImportError(path, "empty file (a header but no rows)") from None
    except pa.ArrowInvalid as exc:
        raise DataImportError(path, f"not a readable table ({exc})") from None


def _column_types(path: Path, first: pa.RecordBatch, target: str, id_column: str | None) -> dict[str, str]:
    """name -> numeric | categorical for the features, from the first block's types and values."""
    names = first.schema.names
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise DataImportError(path, f"duplicate column names {dupes}")
    for wanted, option in ((target, "--target"), (id_column, "--id")):
        if wanted is not None and wanted not in names:
            raise DataImportError(path, f"no column '{wanted}' ({option}); columns: {names[:20]}")
    types = {}
    for field in first.schema:
        if field.name in (target, id_column):
            continue
        if field.name in RESERVED:
            raise DataImportError(path, f"'{field.name}' is reserved: rename the column", column=field.name)
        types[field.name] = _numeric_or_categorical(path, field, first.column(field.name))
    if not types:
        raise DataImportError(path, "no feature columns besides the target and the id")
    return types


def _numeric_or_categorical(path: Path, field: pa.Field, values: pa.Array) -> str:
    if pa.types.is_integer(field.type) or pa.types.is_floating(field.type) or pa.types.is_decimal(field.type):
        return "numeric"
    if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
        return "categorical"
    # judged on the distinct values (a category column has few): cheap on a 16 MiB block
    distinct = pd.Series(pc.unique(values.drop_null()).slice(0, 10_000).to_pylist(), dtype=object)
    parsed = pd.to_numeric(distinct, errors="coerce")
    if len(distinct) and parsed.notna().mean() >= NUMERIC_SHARE:
        bad = distinct[parsed.isna()]
        rows = [pc.index(values, value).as_py() for value in bad]
        row, value = min(zip(rows, bad, strict=True))
        raise DataImportError(path, f"text {value!r} in a numeric column", row=row + 1, column=field.name)
    return "categorical"


def _bad_number_row(path: Path, columns: list[str], offset: int) -> tuple[int | None, str | None, str]:
    """Second pass after a failed conversion: the first value of `columns`, from the failed block
    on, that is not a number -> (row, column, value)."""
    as_text = {n: pa.string() for n in columns} if path.suffix.lower() == ".csv" else None
    seen = 0
    for batch in _table_batches(path, as_text):
        if seen + batch.num_rows > offset:
            for column in columns:
                values = pd.Series(batch.column(column).to_pylist(), dtype=object)
                bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
                if bad.any():
                    index = int(np.flatnonzero(bad.to_numpy())[0])
                    return seen + index + 1, column, str(values[index])
        seen += batch.num_rows
    return None, None, "?"


class _TableStats:
    """Ranges of numeric columns and values of categorical ones, updated one block at a time."""

    def __init__(self, path: Path, types: dict[str, str]):
        self.path, self.types = path, types
        self.low: dict[str, float] = {}
        self.high: dict[str, float] = {}
        self.categories: dict[str, set[str]] = {n: set() for n, t in types.items() if t == "categorical"}

    def update(self, batch: pa.RecordBatch) -> None:
        for name, kind in self.types.items():
            values = batch.column(name)
            if kind == "numeric":
                bounds = pc.min_max(values)
                if bounds["min"].is_valid:
                    self.low[name] = min(self.low.get(name, np.inf), bounds["min"].as_py())
                    self.high[name] = max(self.high.get(name, -np.inf), bounds["max"].as_py())
                continue
            seen = self.categories[name]
            seen.update(v for v in pc.unique(values).to_pylist() if v is not None)
            if len(seen) > MAX_CATEGORIES:
                raise DataImportError(
                    self.path,
                    f"more than {MAX_CATEGORIES} distinct text values: free text or an id, "
                    "not a category (pass it as --id, or drop it)",
                    column=name,
                )

    def columns(self) -> tuple[Column, ...]:
        return tuple(
            Column(n, "numeric", min=self.low.get(n), max=self.high.get(n))
            if t == "numeric"
            else Column(n, "categorical", categories=tuple(sorted(self.categories[n])))
            for n, t in self.types.items()
        )


def _import_table(path: Path, staging: Path, name: str, target: str, id_column: str | None) -> ImportResult:
    types = _column_types(path, _first_block(path), target, id_column)
    arrow_types = {n: pa.float64() if t == "numeric" else pa.string() for n, t in types.items()}
    arrow_types[target] = pa.string()
    if id_column:
        arrow_types[id_column] = pa.string()
    stats, ids_seen = _TableStats(path, types), set[str]()
    label_ids: list[pa.Array] = []
    label_values: list[pa.Array] = []
    out_schema = pa.schema([(ID, pa.string()), *((n, arrow_types[n]) for n in types)])
    offset = 0
    with pq.ParquetWriter(
        staging / ITEMS_FILE, out_schema, compression="zstd", write_statistics=False
    ) as out:
        for batch in _checked_batches(path, arrow_types):
            ids = _ids(path, batch, id_column, offset, ids_seen)
            stats.update(batch)
            out.write_batch(pa.record_batch([ids, *(batch.column(n) for n in types)], schema=out_schema))
            labeled = pc.is_valid(batch.column(target))
            label_ids.append(pc.filter(ids, labeled))
            label_values.append(pc.filter(batch.column(target), labeled))
            offset += batch.num_rows
    if offset == 0:
        raise DataImportError(path, "empty file (a header but no rows)")
    labels = pa.table({ID: pa.concat_arrays(label_ids), LABEL: pa.concat_arrays(label_values)})
    classes = tuple(sorted(pc.unique(labels.column(LABEL)).to_pylist()))
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "no labeled row"
        raise DataImportError(
            path, f"{found} in the target column: at least two classes needed", column=target
        )
    labels = labels.append_column(SOURCE, pa.array([f"import:{path.name}"] * labels.num_rows, pa.string()))
    pq.write_table(labels, staging / LABELS_FILE, compression="zstd", write_statistics=False)
    schema = TabularSchema(name, classes, stats.columns(), target=target, id_column=id_column)
    (staging / SCHEMA_FILE).write_text(schema.to_json())
    return ImportResult("tabular", name, offset, labels.num_rows, classes, dict(types))


def _checked_batches(path: Path, arrow_types: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
    """The table's blocks in the recorded types; a value that does not convert names its row."""
    offset = 0
    batches = _table_batches(path, arrow_types)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            numeric = [n for n, t in arrow_types.items() if t == pa.float64()]
            row, column, value = _bad_number_row(path, numeric, offset)
            raise DataImportError(
                path, f"text {value!r} in a numeric column", row=row, column=column
            ) from None
        offset += batch.num_rows
        yield batch


def _ids(path: Path, batch: pa.RecordBatch, id_column: str | None, offset: int, seen: set[str]) -> pa.Array:
    """The id column as text (missing or duplicate: an error naming the row), else `<row number>`."""
    if id_column is None:
        return pa.array([f"row-{offset + i + 1:08d}" for i in range(batch.num_rows)], pa.string())
    ids = batch.column(id_column)
    if ids.null_count:
        row = offset + int(np.flatnonzero(~pc.is_valid(ids).to_numpy(zero_copy_only=False))[0]) + 1
        raise DataImportError(path, "missing id", row=row, column=id_column)
    for i, value in enumerate(ids.to_pylist()):
        if value in seen:
            raise DataImportError(path, f"duplicate id {value!r}", row=offset + i + 1, column=id_column)
        seen.add(value)
    return ids


def _import_text_table(
    path: Path, staging: Path, name: str, text: str, target: str, id_column: str | None
) -> ImportResult:
    from modelmill.data.text_import import import_texts

    dataset, columns = import_texts(path, staging, name, text, target, id_column)
    classes = dataset.schema.classes
    return ImportResult("text", name, len(dataset.items), len(dataset.labels), classes, columns)


# --- image folders ------------------------------------------------------------------------


def _import_images(root: Path, staging: Path, name: str, size: tuple[int, int]) -> ImportResult:
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")))
    if len(classes) < 2:
        raise DataImportError(root, f"needs one subfolder per class, at least two (found {list(classes)})")
    ids, labels, grids = [], [], []
    for label in classes:
        files = sorted(f for f in (root / label).iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise DataImportError(root / label, "no image files in this class folder")
        for file in files:
            grids.append(_read_image(file, size))
            ids.append(f"{label}/{file.name}")
            labels.append(label)
    stack = np.stack(grids)  # (N, 3, H, W) uint8
    grey = bool((stack[:, 0] == stack[:, 1]).all() and (stack[:, 1] == stack[:, 2]).all())
    pixels = stack[:, :1] if grey else stack
    schema = ImageSchema(
        name,
        classes,
        size,
        (0.0, 255.0),
        description=f"imported from {root.name}/",
        channels=1 if grey else 3,
    )
    items = pd.DataFrame(pixels.reshape(len(ids), -1), columns=schema.feature_columns)
    items.insert(0, ID, ids)
    label_frame = pd.DataFrame({ID: ids, LABEL: labels, SOURCE: f"import:{root.name}"})
    write_dataset(staging, Dataset(schema, items, label_frame))
    columns = {"pixels": f"{schema.channels}x{size[0]}x{size[1]}"}
    return ImportResult("image", name, len(ids), len(ids), classes, columns)


def _read_image(file: Path, size: tuple[int, int]) -> Any:
    from PIL import Image, UnidentifiedImageError

    if file.suffix.lower() not in IMAGE_SUFFIXES:
        raise DataImportError(file, "not a PNG or JPEG file (by its name)")
    try:
        with Image.open(file) as image:
            image.load()
            rgb = image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError):
        raise DataImportError(file, "not a decodable PNG/JPEG image") from None
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
