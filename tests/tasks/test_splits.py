"""The run's split tensors are read once per process, and read again when the data changes."""

import os

import pandas as pd

from modelmill.config import load_settings
from modelmill.data import LABELS_FILE, bootstrap
from tasks import splits
from tasks.context import RunContext


def context(tmp_path) -> RunContext:
    settings = load_settings(None, {"data.dir": "data"})
    return RunContext(str(tmp_path), settings, run_id="none", work_dir=str(tmp_path))


def test_one_read_per_data_version(tmp_path):
    bootstrap(tmp_path / "data", "digits")
    ctx = context(tmp_path)
    first = splits.load_splits(ctx)
    assert splits.load_splits(ctx) is first  # train, evaluate and compress share it
    assert sum(len(y) for _, y in first[2].values()) == 1797

    # a label import rewrites labels.parquet: the next task of the run sees the new labels
    labels_path = tmp_path / "data" / LABELS_FILE
    labels = pd.read_parquet(labels_path)
    labels.iloc[:100].to_parquet(labels_path)
    os.utime(labels_path, ns=(1, 1))  # a rewrite within the clock's resolution still differs by size
    second = splits.load_splits(ctx)
    assert second is not first and sum(len(y) for _, y in second[2].values()) == 100

    splits.forget()
    assert splits.load_splits(ctx) is not second
