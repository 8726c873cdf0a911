"""The tabular kind: preprocessing fitted on train only, unknown categories, raw rows, the suite."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from modelmill.config import ModelConfig, ValidationConfig
from modelmill.data import ID, LABEL, Dataset
from modelmill.data.tables import table_dataset
from modelmill.errors import PredictionInputError
from modelmill.kinds import default_model
from modelmill.kinds import tabular as kind
from modelmill.models import DenseNet, build_from_spec, spec_of


def frame(rows):
    return pd.DataFrame(rows, columns=["age", "city", "target"])


TRAIN = frame([[20.0, "Oslo", "no"], [30.0, "Rome", "yes"], [np.nan, "Oslo", "no"], [40.0, None, "yes"]])


def dataset(df=TRAIN):
    return table_dataset("t", df, "target", [f"r{i}" for i in range(len(df))], "test")


def test_schema_inference_records_types_ranges_and_categories():
    schema = dataset().schema
    assert schema.numeric == ["age"] and schema.categorical == ["city"]
    assert schema.columns[0].min == 20.0 and schema.columns[0].max == 40.0
    assert schema.columns[1].categories == ("Oslo", "Rome") and schema.classes == ("no", "yes")


def test_statistics_come_from_the_train_split_only():
    schema = dataset().schema
    prep = kind.fit_preprocessor(dataset().items, schema)
    assert prep.median == (30.0,) and prep.indicators == ("age",)
    assert prep.mean == (30.0,) and math.isclose(prep.std[0], math.sqrt(50.0))
    # other rows (val/test) change nothing fitted; their extreme value is only transformed
    other = frame([[1000.0, "Paris", "no"]]).drop(columns="target")
    x = prep.transform(other).numpy()
    assert prep == kind.fit_preprocessor(dataset().items, schema)
    assert x.shape == (1, prep.width) == (1, 1 + 1 + 3)
    assert math.isclose(float(x[0, 0]), (1000 - 30) / math.sqrt(50.0), rel_tol=1e-6)


def test_missing_values_are_imputed_with_the_median_and_flagged():
    prep = kind.fit_preprocessor(dataset().items, dataset().schema)
    x = prep.transform(dataset().items).numpy()
    assert prep.feature_names() == ["age", "age__missing", "city=Oslo", "city=Rome", "city=__unknown__"]
    assert x[2, 0] == 0.0 and x[2, 1] == 1.0 and x[0, 1] == 0.0  # median 30 -> standardised 0
    assert list(x[3, 2:]) == [0.0, 0.0, 1.0]  # a missing category goes to the unknown bucket


def test_unknown_category_at_prediction_time_goes_to_the_unknown_bucket():
    schema = dataset().schema
    prep = kind.fit_preprocessor(dataset().items, schema)
    rows = kind.parse_raw([{"age": 25, "city": "Paris"}, {"city": "Rome"}], schema)
    x = prep.transform(rows).numpy()
    assert list(x[0, 2:]) == [0.0, 0.0, 1.0] and list(x[1, 2:]) == [0.0, 1.0, 0.0]
    assert x[1, 1] == 1.0  # an absent key is a missing value


def test_a_category_seen_only_outside_train_is_unknown_to_the_preprocessor():
    df = frame([[20.0, "Oslo", "no"], [30.0, "Rome", "yes"], [35.0, "Lima", "yes"]])
    ds = dataset(df)
    prep = kind.fit_preprocessor(ds.items.iloc[:2], ds.schema)  # Lima only in the last (test) row
    assert ds.schema.columns[1].categories == ("Lima", "Oslo", "Rome")
    assert dict(prep.categories)["city"] == ("Oslo", "Rome")
    assert list(prep.transform(ds.items).numpy()[2, 1:]) == [0.0, 0.0, 1.0]


def test_raw_rows_name_the_row_and_column_when_bad():
    schema = dataset().schema
    with pytest.raises(PredictionInputError, match=r"row 1, column 'age': not a number: 'old'"):
        kind.parse_raw([{"age": 1}, {"age": "old"}], schema)
    with pytest.raises(PredictionInputError, match=r"row 0: unknown column\(s\) \['height'\]"):
        kind.parse_raw([{"height": 1}], schema)


def test_binary_dense_net_has_one_sigmoid_output_trained_by_bce():
    torch.manual_seed(0)
    net = DenseNet(5, 2, width=8, depth=1, dropout=0.0)
    assert net.head.out_features == 1
    x, y = torch.randn(16, 5), torch.randint(0, 2, (16,))
    logits, z = net(x), net.positive_logit(x)
    assert torch.allclose(torch.softmax(logits, 1)[:, 1], torch.sigmoid(z), atol=1e-6)
    ce = torch.nn.functional.cross_entropy(logits, y)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y.float())
    assert torch.allclose(ce, bce, atol=1e-6)
    assert DenseNet(5, 3).head.out_features == 3


def test_default_model_follows_the_schema_and_the_config():
    ds = dataset()
    prep = kind.fit_preprocessor(ds.items, ds.schema)
    model = default_model(ds.schema, ModelConfig(tabular={"width": 7, "depth": 3, "dropout": 0.0}), prep)
    spec = spec_of(model)
    assert spec == {"family": "dense", "inputs": 5, "num_classes": 2, "width": 7, "depth": 3, "dropout": 0.0}
    rebuilt = build_from_spec(spec)
    rebuilt.load_state_dict(model.state_dict())
    x = prep.transform(ds.items)
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))


def test_labeling_config_and_task_data_show_the_row_as_a_table():
    ds = dataset()
    xml = kind.labeling_config(ds.schema.classes, "label", "table", "row")
    assert '<Table name="table" value="$row"/>' in xml and '<Choice value="yes"/>' in xml
    tasks = kind.task_data(ds.items, ds.schema, "row")
    assert tasks[2] == {ID: "r2", "row": {"age": None, "city": "Oslo"}}


def _failures(ds, **cfg):
    from modelmill.validation import validate

    report = validate(ds, ValidationConfig(min_rows=3, **cfg))
    return report, {(f.expectation, f.column): f for f in report.failed}


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    from modelmill.data import bootstrap, load_dataset

    return load_dataset(bootstrap(tmp_path_factory.mktemp("p"), "penguins"))


def test_suite_passes_on_penguins_and_names_bad_rows(penguins):
    report, _ = _failures(penguins)
    assert report.success, report.summary()
    items = penguins.items.copy()
    items.loc[7, "island"] = "Atlantis"
    items.loc[9, "body_mass_g"] = 99999.0
    items["year"] = items["year"].astype(str)
    items.loc[:200, "sex"] = None
    _, failed = _failures(Dataset(penguins.schema, items, penguins.labels))
    assert failed[("expect_column_values_to_be_in_set", "island")].examples[0][ID] == "penguins-0007"
    assert failed[("expect_column_values_to_be_between", "body_mass_g")].examples[0][ID] == "penguins-0009"
    assert ("expect_column_values_to_be_in_type_list", "year") in failed
    assert (
        "more than 50% of the values missing"
        in failed[("expect_column_values_to_not_be_null", "sex")].description
    )


def test_suite_needs_every_class_and_known_items(penguins):
    labels = penguins.labels[penguins.labels[LABEL] != "Gentoo"]
    extra = pd.DataFrame({ID: ["ghost"], LABEL: ["Adelie"], "source": ["x"]})
    _, failed = _failures(Dataset(penguins.schema, penguins.items, pd.concat([labels, extra])))
    assert "Gentoo" in failed[("expect_column_distinct_values_to_contain_set", LABEL)].description
    assert failed[("expect_column_values_to_be_between", "_features_missing")].examples[0][ID] == "ghost"
