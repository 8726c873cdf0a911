"""The two sides of a drift check as DriftSamples: a dataset folder (one data version) or a
file / folder of model inputs (CSV, Parquet, images), read against the reference's schema.

With the champion's fitted preprocessor (kinds other than image), the model inputs are what the
champion sees, and the raw feature columns travel along for the per-feature tests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd

from modelmill.data import ID, LABEL, DatasetSchema, load_dataset, missing_files, to_tensors
from modelmill.drift import DriftSample
from modelmill.errors import DriftError

if TYPE_CHECKING:
    from modelmill.kinds.base import Preprocessor

TABLE_SUFFIXES = {".parquet", ".pq", ".csv"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}


def sample_of_dataset(
    data_dir: str | Path, name: str, preprocessor: Preprocessor | None = None
) -> tuple[DriftSample, DatasetSchema]:
    """Every labeled item of the dataset folder, with its labels."""
    dataset = load_dataset(data_dir)
    labeled = dataset.labeled()
    schema = cast(DatasetSchema, dataset.schema)
    labels = labeled[LABEL].astype(str).tolist()
    if preprocessor is not None:
        return _preprocessed(labeled, schema, name, preprocessor, labels), schema
    x, _ = to_tensors(labeled, dataset.schema)
    return DriftSample(name, x, labels), schema


def _preprocessed(
    frame: pd.DataFrame,
    schema: DatasetSchema,
    name: str,
    preprocessor: Preprocessor,
    labels: list[str] | None,
) -> DriftSample:
    features = frame[schema.feature_columns].reset_index(drop=True)
    return DriftSample(name, preprocessor.transform(features), labels, features)


def sample_of_inputs(
    path: str | Path, schema: DatasetSchema, name: str | None = None, preprocessor: Preprocessor | None = None
) -> DriftSample:
    """Model inputs in a CSV / Parquet table (the schema's feature columns, optionally `label`), a
    folder of such tables (`modelmill serve`'s serve.inputs_dir), a dataset folder, or a folder of
    images (greyscale, resized to the schema's image shape)."""
    path = Path(path)
    name = name or str(path)
    if path.is_dir() and not missing_files(path):
        return sample_of_dataset(path, name, preprocessor)[0]
    if path.is_dir() and (tables := _tables_in(path)):
        return _sample_of_frame(pd.concat(tables, ignore_index=True), schema, name, preprocessor)
    if path.is_dir():
        return _sample_of_images(path, schema, name)
    if path.suffix.lower() in {".parquet", ".pq"}:
        frame = pd.read_parquet(path)
    elif path.suffix.lower() == ".csv":
        frame = pd.read_csv(path)
    else:
        raise DriftError(f"{path}: expected a CSV or Parquet file, a dataset folder or a folder of images")
    return _sample_of_frame(frame, schema, name, preprocessor)


def _tables_in(folder: Path) -> list[pd.DataFrame]:
    """Every Parquet / CSV file of a folder (e.g. the inputs `modelmill serve` logged), in name order."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in TABLE_SUFFIXES and p.is_file())
    return [pd.read_parquet(f) if f.suffix.lower() != ".csv" else pd.read_csv(f) for f in files]


def _sample_of_frame(
    frame: pd.DataFrame, schema: DatasetSchema, name: str, preprocessor: Preprocessor | None = None
) -> DriftSample:
    missing = [c for c in schema.feature_columns if c not in frame.columns]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DriftError(f"{name}: missing feature columns {shown} (expected those of {schema.name})")
    labels = frame[LABEL].astype(str).tolist() if LABEL in frame else None
    if preprocessor is not None:  # the kind's own reading: categories, missing values, texts
        return _preprocessed(frame, schema, name, preprocessor, labels)
    rows = frame[schema.feature_columns].apply(pd.to_numeric, errors="coerce")
    bad = rows.isna().any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        where = frame[ID].iloc[row] if ID in frame else f"row {row + 1}"
        raise DriftError(f"{name}: {where}: a feature value is missing or not a number")
    x, _ = to_tensors(rows, schema)
    return DriftSample(name, x, labels)


def _sample_of_images(folder: Path, schema: DatasetSchema, name: str) -> DriftSample:
    from PIL import Image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DriftError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) and no dataset files")
    height, width = schema.image_shape
    low, high = schema.pixel_range
    pixels = []
    for file in files:
        try:
            with Image.open(file) as image:
                grey = image.convert("L").resize((width, height), Image.Resampling.BILINEAR)
        except OSError as exc:
            raise DriftError(f"{file}: not a readable image ({exc})") from None
        pixels.append(np.asarray(grey, dtype=np.float32).reshape(-1) / 255.0 * (high - low) + low)
    frame = pd.DataFrame(np.stack(pixels), columns=schema.feature_columns)
    return DriftSample(name, to_tensors(frame, schema)[0])
