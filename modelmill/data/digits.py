"""Source: scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes, no download)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelmill.data import ID, LABEL, SOURCE, DatasetSchema

SCHEMA = DatasetSchema(
    name="digits",
    classes=tuple(str(d) for d in range(10)),
    image_shape=(8, 8),
    pixel_range=(0.0, 16.0),
    description="scikit-learn load_digits: 8x8 grey levels 0-16",
)


def load() -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ids = [f"digits-{i:04d}" for i in range(len(bunch.target))]
    items = pd.DataFrame(bunch.data.astype(np.uint8), columns=SCHEMA.feature_columns)
    items.insert(0, ID, ids)
    labels = pd.DataFrame(
        {ID: ids, LABEL: [SCHEMA.classes[t] for t in bunch.target], SOURCE: "sklearn:load_digits"}
    )
    return items, labels
