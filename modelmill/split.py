"""Deterministic train/val/test split by a hash of the item id: a test item stays a test item."""

from __future__ import annotations

import hashlib

import pandas as pd

from modelmill.config import SplitConfig
from modelmill.data import ID

SPLITS = ("train", "val", "test")


def bucket_of(item_id: str, salt: str) -> float:
    """A stable number in [0, 1) for the item, independent of the other items."""
    digest = hashlib.sha256(f"{salt}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(item_id: str, cfg: SplitConfig) -> str:
    b = bucket_of(item_id, cfg.salt)
    if b < cfg.test_fraction:
        return "test"
    if b < cfg.test_fraction + cfg.val_fraction:
        return "val"
    return "train"


def split_frame(frame: pd.DataFrame, cfg: SplitConfig) -> dict[str, pd.DataFrame]:
    """The frame's rows by split name, each in the frame's order."""
    names = frame[ID].map(lambda i: split_of(i, cfg))
    return {name: frame[names == name].reset_index(drop=True) for name in SPLITS}


def split_definition(salt: str, val_fraction: float, test_fraction: float) -> str:
    """What decides which item lands in which split, as recorded on every model version."""
    return f"salt={salt};val={val_fraction:g};test={test_fraction:g}"
