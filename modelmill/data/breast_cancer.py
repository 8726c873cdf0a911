"""Source: scikit-learn's bundled breast-cancer table (569 rows, 30 numeric features, binary)."""

from __future__ import annotations

from modelmill.data import Dataset
from modelmill.data.tables import table_dataset

# the positive class (index 1 of a binary schema) is the one a screening looks for
CLASSES = ("benign", "malignant")


def dataset() -> Dataset:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.copy()
    frame["diagnosis"] = [str(bunch.target_names[t]) for t in bunch.target]
    frame = frame.drop(columns=["target"])
    ids = [f"breast-cancer-{i:04d}" for i in range(len(frame))]
    return table_dataset(
        "breast_cancer",
        frame,
        "diagnosis",
        ids,
        "sklearn:load_breast_cancer",
        classes=CLASSES,
        description="scikit-learn load_breast_cancer (Wisconsin diagnostic): 30 numeric features",
    )
