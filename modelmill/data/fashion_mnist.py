"""Source: Fashion-MNIST (70,000 28x28 images, 10 classes) from Debian's dataset-fashion-mnist."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd

from modelmill.data import ID, LABEL, SOURCE, DatasetSchema
from modelmill.errors import DataSourceError

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
SCHEMA = DatasetSchema(
    name="fashion_mnist",
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    image_shape=(28, 28),
    pixel_range=(0.0, 255.0),
    description="Fashion-MNIST from Debian package dataset-fashion-mnist",
)
_PARTS = {"train": "train", "test": "t10k"}


def load(directory: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    root = Path(directory or os.environ.get("MODELMILL_FASHION_MNIST_DIR", DEFAULT_DIR))
    frames, label_frames = [], []
    for part, prefix in _PARTS.items():
        images = _read_idx(_find(root, f"{prefix}-images-idx3-ubyte"), header=16)
        targets = _read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"), header=8)
        if len(images) != 784 * len(targets):
            raise DataSourceError(f"{root}: {part} images and labels disagree in count")
        ids = [f"fmnist-{part}-{i:05d}" for i in range(len(targets))]
        items = pd.DataFrame(images.reshape(-1, 784), columns=SCHEMA.feature_columns)
        items.insert(0, ID, ids)
        frames.append(items)
        label_frames.append(
            pd.DataFrame(
                {ID: ids, LABEL: [SCHEMA.classes[t] for t in targets], SOURCE: f"fashion-mnist:{part}"}
            )
        )
    return pd.concat(frames, ignore_index=True), pd.concat(label_frames, ignore_index=True)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise DataSourceError(
        f"{root / (stem + '.gz')}: not found. Fashion-MNIST comes from Debian's package "
        "'dataset-fashion-mnist' (apt-get install dataset-fashion-mnist), "
        "or set MODELMILL_FASHION_MNIST_DIR to a folder with the idx files"
    )


def _read_idx(path: Path, header: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return np.frombuffer(fh.read()[header:], dtype=np.uint8)
