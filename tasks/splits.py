"""The run's dataset as split tensors, read once per process: train, evaluate and compress of
one flow run share one read instead of parsing the Parquet files and converting them each."""

from __future__ import annotations

from pathlib import Path

from modelmill.data import ITEMS_FILE, LABELS_FILE, SCHEMA_FILE, load_dataset, to_tensors
from modelmill.split import split_frame
from tasks.context import RunContext

# one entry: (data folder, its files' stamps, split config) -> (dataset, labeled rows, tensors)
_cache: dict[tuple, tuple] = {}


def _stamp(data_dir: Path) -> tuple:
    """Changes whenever a data file is rewritten (label import, dvc checkout, bootstrap)."""
    return tuple(
        (name, (st := Path(data_dir, name).stat()).st_mtime_ns, st.st_size)
        for name in (SCHEMA_FILE, ITEMS_FILE, LABELS_FILE)
    )


def load_splits(ctx: RunContext):
    """The dataset, its labeled rows and {split: (x, y)} tensors by item-id hash.

    The tensors are shared between callers: read them, do not modify them in place.
    """
    data_dir = ctx.data_dir.resolve()
    key = (str(data_dir), _stamp(data_dir), ctx.settings.split.model_dump_json())
    if key not in _cache:
        _cache.clear()  # one dataset at a time: a long-lived process does not pile them up
        dataset = load_dataset(data_dir)
        labeled = dataset.labeled()
        parts = split_frame(labeled, ctx.settings.split)
        _cache[key] = (
            dataset,
            labeled,
            {name: to_tensors(frame, dataset.schema) for name, frame in parts.items()},
        )
    return _cache[key]


def forget() -> None:
    """Drop the cached tensors (at the end of a flow run)."""
    _cache.clear()
