"""`data import` core: tables and image folders in; bad input named by file, row and column,
with the data folder left byte for byte as it was."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from modelmill.data import ID, LABEL, bootstrap, load_dataset
from modelmill.data import imports as imports_module
from modelmill.data.imports import import_data
from modelmill.errors import DataImportError


def digest(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def table(n=200, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer": [f"c{i}" for i in range(n)],
            "age": rng.integers(18, 90, n).astype(float),
            "plan": rng.choice(["basic", "pro"], n),
            "spend": rng.normal(50, 10, n),
            "churned": rng.choice(["no", "yes"], n),
        }
    )
    frame.loc[3, "age"] = np.nan
    return frame


def test_csv_and_parquet_import_the_same_table(tmp_path):
    table().to_csv(tmp_path / "t.csv", index=False)
    table().to_parquet(tmp_path / "t.parquet")
    a = import_data(tmp_path / "t.csv", tmp_path / "a", target="churned", id_column="customer")
    b = import_data(tmp_path / "t.parquet", tmp_path / "b", target="churned", id_column="customer")
    assert a == b and a.columns == {"age": "numeric", "plan": "categorical", "spend": "numeric"}
    da, db = load_dataset(tmp_path / "a"), load_dataset(tmp_path / "b")
    assert da.schema == db.schema and da.schema.id_column == "customer"
    assert da.schema.columns[1].categories == ("basic", "pro") and da.schema.columns[0].max <= 89
    pd.testing.assert_frame_equal(da.items, db.items)
    assert da.items[ID].iloc[5] == "c5" and np.isnan(da.items["age"].iloc[3])
    assert list(da.labels.columns) == [ID, LABEL, "source"] and len(da.labels) == 200


def test_generated_ids_are_stable_row_numbers(tmp_path):
    table().drop(columns="customer").to_csv(tmp_path / "t.csv", index=False)
    import_data(tmp_path / "t.csv", tmp_path / "a", target="churned")
    import_data(tmp_path / "t.csv", tmp_path / "b", target="churned")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert load_dataset(tmp_path / "a").items[ID].iloc[0] == "row-00000001"


def test_rows_without_a_target_are_unlabeled_items(tmp_path):
    frame = table()
    frame.loc[10:19, "churned"] = None
    frame.to_csv(tmp_path / "t.csv", index=False)
    result = import_data(tmp_path / "t.csv", tmp_path / "d", target="churned", id_column="customer")
    assert (result.items, result.labeled) == (200, 190)


def _images(root, sizes=((16, 16), (40, 30)), rgb=True):
    rng = np.random.default_rng(1)
    for label, base in (("cat", 60), ("dog", 190)):
        (root / label).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes * 2):
            shape = (h, w, 3) if rgb else (h, w)
            grid = np.clip(base + rng.integers(-30, 30, shape), 0, 255).astype(np.uint8)
            Image.fromarray(grid).save(root / label / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def test_image_folder_of_two_sizes_is_resized_and_keeps_rgb(tmp_path):
    result = import_data(_images(tmp_path / "photos"), tmp_path / "d", image_size=(12, 10))
    ds = load_dataset(tmp_path / "d")
    assert result.classes == ("cat", "dog") and result.items == 8
    assert ds.schema.channels == 3 and ds.schema.image_shape == (12, 10) and ds.items.shape == (8, 1 + 360)
    assert ds.items[ID].iloc[0] == "cat/0.jpg"


def test_grey_images_give_one_channel(tmp_path):
    import_data(_images(tmp_path / "scans", rgb=False), tmp_path / "d", image_size=(8, 8))
    assert load_dataset(tmp_path / "d").schema.channels == 1


def write(path, text):
    path.write_text(text)
    return path


BAD = {
    "no target column": (lambda d: write(d / "x.csv", "a,b\n1,2\n3,4\n"), {}, r"x.csv: no column 'target'"),
    "one class only": (
        lambda d: write(d / "x.csv", "a,target\n1,yes\n2,yes\n"),
        {},
        r"x.csv, column 'target': only 'yes' in the target column",
    ),
    "text in a numeric column": (
        lambda d: write(d / "x.csv", "a,target\n" + "".join(f"{i},{i % 2}\n" for i in range(30)) + "abc,1\n"),
        {},
        r"x.csv, row 31, column 'a': text 'abc' in a numeric column",
    ),
    "duplicate ids": (
        lambda d: write(d / "x.csv", "id,a,target\nk1,1,0\nk2,2,1\nk1,3,0\n"),
        {"id_column": "id"},
        r"x.csv, row 3, column 'id': duplicate id 'k1'",
    ),
    "empty file": (lambda d: write(d / "x.csv", ""), {}, r"x.csv: empty file"),
    "header only": (
        lambda d: write(d / "x.csv", "a,target\n"),
        {},
        r"x.csv: empty file \(a header but no rows\)",
    ),
    "undecodable image": (
        lambda d: (_images(d / "imgs"), write(d / "imgs" / "dog" / "9.png", "not a png"))[0],
        {},
        r"imgs/dog/9.png: not a decodable PNG/JPEG image",
    ),
    "one class folder": (
        lambda d: (d / "imgs" / "cat").mkdir(parents=True) or d / "imgs",
        {},
        r"imgs: needs one subfolder per class",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_named_and_leaves_the_data_folder_byte_identical(tmp_path, case):
    make, options, message = BAD[case]
    data = bootstrap(tmp_path / "project" / "data")
    before = digest(tmp_path / "project")
    source = make(tmp_path)
    with pytest.raises(DataImportError, match=message):
        import_data(source, data, **options)
    assert digest(tmp_path / "project") == before  # no staging left behind either


def test_text_after_the_first_block_names_its_row(tmp_path, monkeypatch):
    monkeypatch.setattr(imports_module, "BLOCK_BYTES", 1024)
    rows = "".join(f"{i}.5,{i % 2}\n" for i in range(2000))
    source = write(tmp_path / "x.csv", "a,target\n" + rows + "n/a?,1\n")
    with pytest.raises(DataImportError, match=r"row 2001, column 'a': text 'n/a\?' in a numeric column"):
        import_data(source, tmp_path / "d")
    assert not (tmp_path / "d").exists()
