import pandas as pd

from modelmill.config import SplitConfig
from modelmill.split import split_frame, split_of


def frame(n, start=0):
    return pd.DataFrame({"item_id": [f"item-{i}" for i in range(start, start + n)], "v": range(n)})


def test_split_is_stable_when_rows_are_added():
    cfg = SplitConfig()
    before = {i: split_of(i, cfg) for i in frame(1000)["item_id"]}
    parts = split_frame(pd.concat([frame(1000), frame(500, start=1000)]).sample(frac=1, random_state=1), cfg)
    after = {i: name for name, part in parts.items() for i in part["item_id"]}
    assert all(after[i] == s for i, s in before.items())


def test_split_fractions_are_close_to_config():
    cfg = SplitConfig(val_fraction=0.2, test_fraction=0.1)
    parts = split_frame(frame(20000), cfg)
    assert abs(len(parts["test"]) / 20000 - 0.1) < 0.01
    assert abs(len(parts["val"]) / 20000 - 0.2) < 0.01
    assert sum(len(p) for p in parts.values()) == 20000


def test_salt_changes_the_assignment():
    ids = frame(200)["item_id"]
    a = [split_of(i, SplitConfig(salt="a")) for i in ids]
    b = [split_of(i, SplitConfig(salt="b")) for i in ids]
    assert a != b
