"""The versioned dataset: items (features), canonical labels and a schema, in one folder.

Layout of the data folder (what DVC versions):
    dataset.json     schema: schema_version, kind (image | tabular | text), name, classes, the kind's fields
    items.parquet    item_id + the kind's feature columns (px0..pxN; columns; the text), one row per item
    labels.parquet   item_id, label (class name), source (where the label came from)
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modelmill.atomic import atomic_path, atomic_write_bytes
from modelmill.errors import DatasetError, DataSourceError
from modelmill.kinds import Preprocessor, Schema, kind_of, schema_from_json
from modelmill.kinds.columns import ID, ITEMS_FILE, LABEL, LABELS_FILE, SCHEMA_FILE, SOURCE
from modelmill.kinds.image import ImageSchema
from modelmill.kinds.tabular import TabularSchema

DatasetSchema = ImageSchema  # the image kind's schema (the only kind before schema_version 2)
__all__ = [
    "ID", "ITEMS_FILE", "LABEL", "LABELS_FILE", "SCHEMA_FILE", "SOURCE", "SOURCES",
    "Dataset", "DatasetSchema", "ImageSchema", "TabularSchema", "bootstrap", "load_dataset",
    "read_schema", "to_tensors", "labels_tensor", "fit_splits", "write_dataset", "atomic_write_bytes",
]  # fmt: skip

# name in params.yaml (data.source) -> core module with load() and SCHEMA (or dataset())
SOURCES = {
    "digits": "modelmill.data.digits",
    "fashion_mnist": "modelmill.data.fashion_mnist",
    "breast_cancer": "modelmill.data.breast_cancer",
    "penguins": "modelmill.data.penguins",
    "rotten_tomatoes": "modelmill.data.rotten_tomatoes",
    "rotten_tomatoes_full": "modelmill.data.rotten_tomatoes_full",
}


@dataclass
class Dataset:
    schema: Schema
    items: pd.DataFrame
    labels: pd.DataFrame

    def labeled(self) -> pd.DataFrame:
        """Items joined with their canonical label, in item order; unlabeled items dropped."""
        return self.items.merge(self.labels[[ID, LABEL]], on=ID, how="inner", validate="one_to_one")


def source_module(name: str):
    if name not in SOURCES:
        raise DataSourceError(f"data.source: unknown source '{name}' (known: {', '.join(sorted(SOURCES))})")
    return import_module(SOURCES[name])


def bootstrap(data_dir: str | Path, source: str = "digits") -> Path:
    """Write the source's dataset into data_dir, byte for byte the same on every machine."""
    module = source_module(source)
    if hasattr(module, "dataset"):
        dataset = module.dataset()
    else:
        items, labels = module.load()
        dataset = Dataset(module.SCHEMA, items, labels)
    write_dataset(data_dir, dataset)
    return Path(data_dir)


def write_dataset(data_dir: str | Path, dataset: Dataset) -> None:
    """Write the three files atomically (temp file in the same folder, then rename)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write_parquet(data_dir / ITEMS_FILE, dataset.items)
    _atomic_write_parquet(data_dir / LABELS_FILE, dataset.labels)
    atomic_write_bytes(data_dir / SCHEMA_FILE, dataset.schema.to_json().encode())


def missing_files(data_dir: str | Path) -> list[str]:
    return [f for f in (SCHEMA_FILE, ITEMS_FILE, LABELS_FILE) if not Path(data_dir, f).exists()]


def load_dataset(data_dir: str | Path) -> Dataset:
    data_dir = Path(data_dir)
    missing = missing_files(data_dir)
    if missing:
        raise DatasetError(
            f"{data_dir}: missing {', '.join(missing)}; run `modelmill data bootstrap` or `dvc pull`"
        )
    schema = read_schema(data_dir)
    items = pd.read_parquet(data_dir / ITEMS_FILE)
    labels = pd.read_parquet(data_dir / LABELS_FILE)
    return Dataset(schema, items, labels)


def read_schema(data_dir: str | Path) -> Schema:
    """dataset.json of a data folder; a file without schema_version is read as the v1 image layout."""
    path = Path(data_dir, SCHEMA_FILE)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the dataset schema ({exc.strerror})") from None
    return schema_from_json(text, where=str(path))


def to_tensors(frame: pd.DataFrame, schema: Schema, preprocessor: Preprocessor | None = None):
    """Model inputs and class indices (int64; None without a label column).

    With a fitted preprocessor: its transform. Without one, images are only scaled to [0, 1]
    as (N, C, H, W); other kinds need a preprocessor fitted on the train split.
    """
    import torch

    if preprocessor is not None:
        x = preprocessor.transform(frame)
    elif isinstance(schema, ImageSchema):
        from modelmill.kinds.image import scaled_pixels

        x = torch.from_numpy(np.ascontiguousarray(scaled_pixels(frame, schema)))
    else:
        raise DatasetError(f"{schema.kind} data needs a preprocessor fitted on the train split")
    return x, labels_tensor(frame, schema)


def labels_tensor(frame: pd.DataFrame, schema: Schema):
    import torch

    if LABEL not in frame:
        return None
    index = {name: i for i, name in enumerate(schema.classes)}
    return torch.tensor([index[label] for label in frame[LABEL]], dtype=torch.int64)


def fit_splits(parts: dict[str, pd.DataFrame], schema: Schema):
    """The kind's preprocessor fitted on parts["train"] and every part as (x, y) tensors."""
    preprocessor = kind_of(schema).fit_preprocessor(parts["train"], schema)
    return preprocessor, {name: to_tensors(frame, schema, preprocessor) for name, frame in parts.items()}


def _atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # Drop pandas' metadata block (it embeds the pandas version) so the bytes depend on data only.
    table = table.replace_schema_metadata(None)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=False)
