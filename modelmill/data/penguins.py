"""Source: palmerpenguins (344 penguins, 3 species; missing values and categorical columns)."""

from __future__ import annotations

from modelmill.data import Dataset
from modelmill.data.tables import table_dataset
from modelmill.errors import DataSourceError


def dataset() -> Dataset:
    try:
        from palmerpenguins import load_penguins
    except ImportError:
        raise DataSourceError("data.source penguins needs the package palmerpenguins==0.1.6") from None
    frame = load_penguins()
    ids = [f"penguins-{i:04d}" for i in range(len(frame))]
    return table_dataset(
        "penguins",
        frame,
        "species",
        ids,
        "palmerpenguins:load_penguins",
        description="palmerpenguins 0.1.6: island, bill, flipper, body mass, sex, year -> species",
    )
