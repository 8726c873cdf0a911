"""The versioned dataset: items (features), canonical labels and a schema, in one folder.

Layout of the data folder (what DVC versions):
    dataset.json     schema: name, classes, image shape, pixel range
    items.parquet    item_id + pixel columns px0..pxN (one row per item, labeled or not)
    labels.parquet   item_id, label (class name), source (where the label came from)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import import_module
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modelmill.atomic import atomic_path, atomic_write_bytes
from modelmill.errors import DatasetError, DataSourceError

ID = "item_id"
LABEL = "label"
SOURCE = "source"
ITEMS_FILE = "items.parquet"
LABELS_FILE = "labels.parquet"
SCHEMA_FILE = "dataset.json"

# name in params.yaml (data.source) -> core module with SCHEMA and load()
SOURCES = {"digits": "modelmill.data.digits", "fashion_mnist": "modelmill.data.fashion_mnist"}


@dataclass(frozen=True)
class DatasetSchema:
    name: str
    classes: tuple[str, ...]
    image_shape: tuple[int, int]
    pixel_range: tuple[float, float]
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def feature_columns(self) -> list[str]:
        return [f"px{i}" for i in range(self.image_shape[0] * self.image_shape[1])]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "DatasetSchema":
        raw = json.loads(text)
        raw["classes"] = tuple(raw["classes"])
        raw["image_shape"] = tuple(raw["image_shape"])
        raw["pixel_range"] = tuple(raw["pixel_range"])
        return cls(**raw)


@dataclass
class Dataset:
    schema: DatasetSchema
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
    items, labels = module.load()
    write_dataset(data_dir, Dataset(module.SCHEMA, items, labels))
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
    try:
        schema = DatasetSchema.from_json((data_dir / SCHEMA_FILE).read_text())
    except (ValueError, TypeError, KeyError) as exc:
        raise DatasetError(f"{data_dir / SCHEMA_FILE}: not a valid dataset schema ({exc})") from None
    items = pd.read_parquet(data_dir / ITEMS_FILE)
    labels = pd.read_parquet(data_dir / LABELS_FILE)
    return Dataset(schema, items, labels)


def to_tensors(frame: pd.DataFrame, schema: DatasetSchema):
    """Features scaled to [0, 1] as (N, 1, H, W) float32 and class indices as int64."""
    import torch

    low, high = schema.pixel_range
    pixels = frame[schema.feature_columns].to_numpy(dtype=np.float32)
    x = torch.from_numpy((pixels - low) / (high - low)).reshape(-1, 1, *schema.image_shape)
    index = {name: i for i, name in enumerate(schema.classes)}
    y = torch.tensor([index[label] for label in frame[LABEL]], dtype=torch.int64) if LABEL in frame else None
    return x, y


def _atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # Drop pandas' metadata block (it embeds the pandas version) so the bytes depend on data only.
    table = table.replace_schema_metadata(None)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=False)
