"""Kinds: dataset.json round trips per kind, the v1 layout read as image, clear errors."""

import json

import pytest

from modelmill.data import ID, DatasetSchema, bootstrap, load_dataset, read_schema
from modelmill.errors import DatasetError
from modelmill.kinds import KINDS, kind_module, preprocessor_from_state, schema_from_json
from modelmill.kinds.image import ImageSchema
from modelmill.kinds.tabular import Column, TabularSchema


def test_every_kind_is_one_module_with_the_same_interface():
    for name in KINDS:
        module = kind_module(name)
        for attr in (
            "schema_from_dict", "fit_preprocessor", "Preprocessor", "default_model_spec", "SEARCH_SPACE",
            "expectations", "derive_columns", "DESCRIPTIONS", "labeling_config", "task_data",
            "parse_raw",
        ):  # fmt: skip
            assert hasattr(module, attr), f"{name} lacks {attr}"


@pytest.mark.parametrize(
    "schema",
    [
        ImageSchema("rgb", ("a", "b"), (4, 6), (0.0, 255.0), description="d", channels=3),
        TabularSchema(
            "t",
            ("no", "yes"),
            (Column("age", "numeric", min=0.0, max=99.5), Column("city", "categorical", ("Oslo", "Rome"))),
            target="churn",
            id_column="customer",
        ),
    ],
)
def test_schema_round_trips_through_dataset_json(schema):
    text = schema.to_json()
    raw = json.loads(text)
    assert raw["schema_version"] == 2 and raw["kind"] == schema.kind
    assert schema_from_json(text) == schema
    assert schema_from_json(text).to_json() == text


def test_v1_file_without_schema_version_reads_as_image(tmp_path):
    data = bootstrap(tmp_path / "d")
    raw = json.loads((data / "dataset.json").read_text())
    v1 = {k: v for k, v in raw.items() if k not in ("schema_version", "kind", "channels")}
    (data / "dataset.json").write_text(json.dumps(v1))
    schema = read_schema(data)
    assert isinstance(schema, DatasetSchema) and schema.channels == 1 and schema.image_shape == (8, 8)
    assert load_dataset(data).items[ID].is_unique


def test_unknown_kind_and_newer_version_name_the_file(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"schema_version": 2, "kind": "audio", "name": "x"}))
    with pytest.raises(DatasetError, match=r"dataset.json.*unknown dataset kind 'audio'"):
        read_schema(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"schema_version": 9, "kind": "image"}))
    with pytest.raises(DatasetError, match="schema_version 9 is newer"):
        read_schema(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"schema_version": 2, "kind": "tabular", "name": "x"}))
    with pytest.raises(DatasetError, match="not a valid tabular dataset schema"):
        read_schema(tmp_path)


def test_builtin_tabular_sources_bootstrap_byte_for_byte(tmp_path):
    for source in ("breast_cancer", "penguins"):
        a, b = bootstrap(tmp_path / f"{source}-a", source), bootstrap(tmp_path / f"{source}-b", source)
        assert {p.name: p.read_bytes() for p in a.iterdir()} == {p.name: p.read_bytes() for p in b.iterdir()}
    cancer, penguins = load_dataset(tmp_path / "breast_cancer-a"), load_dataset(tmp_path / "penguins-a")
    assert cancer.schema.classes == ("benign", "malignant") and len(cancer.schema.numeric) == 30
    assert len(cancer.labels) == 569
    assert penguins.schema.categorical == ["island", "sex"] and len(penguins.items) == 344
    assert penguins.items["bill_length_mm"].isna().sum() == 2 and penguins.items["sex"].isna().sum() == 11


def test_preprocessor_state_is_plain_json_and_names_its_kind(tmp_path):
    from modelmill.config import SplitConfig
    from modelmill.data import fit_splits
    from modelmill.split import split_frame

    for source in ("digits", "penguins"):
        ds = load_dataset(bootstrap(tmp_path / source, source))
        prep, xy = fit_splits(split_frame(ds.labeled(), SplitConfig()), ds.schema)
        state = json.loads(json.dumps(prep.state()))
        again = preprocessor_from_state(state)
        assert again == prep and again.state() == prep.state()
        assert (again.transform(ds.labeled()) == prep.transform(ds.labeled())).all()
