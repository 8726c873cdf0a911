"""The expectation suite catches each kind of bad row and names the row."""

import numpy as np
import pytest

from modelmill.config import ValidationConfig
from modelmill.data import ID, bootstrap, load_dataset
from modelmill.errors import ValidationFailed
from modelmill.validation import validate


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return load_dataset(bootstrap(tmp_path_factory.mktemp("data")))


def fresh(ds):
    from modelmill.data import Dataset

    return Dataset(ds.schema, ds.items.copy(), ds.labels.copy())


def failures(ds, **cfg):
    report = validate(ds, ValidationConfig(**cfg))
    return report, {(f.expectation, f.column): f for f in report.failed}


def test_clean_dataset_passes(clean):
    report, _ = failures(clean)
    assert report.success and report.evaluated == 10
    report.raise_for_failure()


def test_nan_pixel(clean):
    ds = fresh(clean)
    ds.items["px3"] = ds.items["px3"].astype(float)
    ds.items.loc[5, "px3"] = np.nan
    _, failed = failures(ds)
    hit = failed[("expect_column_values_to_be_between", "_pixel_nulls")]
    assert hit.examples[0][ID] == "digits-0005"


def test_out_of_range_pixel(clean):
    ds = fresh(clean)
    ds.items.loc[9, "px10"] = 17
    _, failed = failures(ds)
    hit = failed[("expect_column_values_to_be_between", "_pixel_max")]
    assert hit.unexpected_count == 1 and hit.examples[0] == {ID: "digits-0009", "_pixel_max": 17}


def test_unknown_label(clean):
    ds = fresh(clean)
    ds.labels.loc[12, "label"] = "cat"
    report, failed = failures(ds)
    hit = failed[("expect_column_values_to_be_in_set", "label")]
    assert hit.examples[0] == {ID: "digits-0012", "label": "cat"}
    with pytest.raises(ValidationFailed, match="digits-0012"):
        report.raise_for_failure()


def test_duplicate_item_id(clean):
    ds = fresh(clean)
    ds.items.loc[1, ID] = "digits-0000"
    ds.labels.loc[1, ID] = "digits-0000"
    _, failed = failures(ds)
    assert ("expect_column_values_to_be_unique", ID) in failed


def test_label_for_unknown_item(clean):
    ds = fresh(clean)
    ds.labels.loc[3, ID] = "ghost-1"
    _, failed = failures(ds)
    assert failed[("expect_column_values_to_be_between", "_pixel_nulls")].examples[0][ID] == "ghost-1"


def test_missing_column_missing_class_and_too_few_rows(clean):
    ds = fresh(clean)
    ds.items = ds.items.drop(columns=["px63"])
    keep = ds.labels["label"] != "7"
    ds.labels = ds.labels[keep].head(50)
    report, failed = failures(ds, min_rows=100)
    kinds = {k for k, _ in failed}
    assert {
        "expect_table_columns_to_match_set",
        "expect_table_row_count_to_be_between",
        "expect_column_distinct_values_to_contain_set",
    } <= kinds
    assert "'7'" in report.summary() and "px63" in report.summary()


def test_data_docs_are_built(clean, tmp_path):
    report = validate(clean, ValidationConfig(), docs_dir=tmp_path / "gx")
    assert report.docs_index is not None and report.docs_index.exists()
