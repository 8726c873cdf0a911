"""Build a tabular Dataset from a frame of features and a target column (built-in sources, import)."""

from __future__ import annotations

import pandas as pd

from modelmill.data import ID, LABEL, SOURCE, Dataset
from modelmill.kinds.tabular import TabularSchema, categorical_strings, infer_columns


def table_dataset(
    name: str,
    frame: pd.DataFrame,
    target: str,
    ids: list[str],
    source: str,
    classes: tuple[str, ...] | None = None,
    description: str = "",
    id_column: str | None = None,
) -> Dataset:
    """Items (item_id + features, categoricals as text) and labels of the rows with a target."""
    features = frame.drop(columns=[target]).reset_index(drop=True)
    columns = infer_columns(features)
    for column in columns:
        if column.type == "categorical":
            features[column.name] = categorical_strings(features[column.name])
    items = features.copy()
    items.insert(0, ID, ids)
    labels_text = categorical_strings(frame[target].reset_index(drop=True))
    labeled = labels_text.notna()
    labels = pd.DataFrame({ID: items.loc[labeled, ID], LABEL: labels_text[labeled], SOURCE: source})
    found = tuple(sorted(labels[LABEL].unique()))
    schema = TabularSchema(
        name=name,
        classes=classes or found,
        columns=columns,
        target=target,
        id_column=id_column,
        description=description,
    )
    return Dataset(schema, items, labels.reset_index(drop=True))
