import gzip
import hashlib

import numpy as np
import pytest

from modelmill.data import ID, LABEL, bootstrap, fashion_mnist, load_dataset, to_tensors
from modelmill.errors import DatasetError, DataSourceError


def digest(folder):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_bootstrap_is_byte_for_byte_deterministic(tmp_path):
    a, b = bootstrap(tmp_path / "a"), bootstrap(tmp_path / "b")
    assert digest(a) == digest(b)
    assert set(digest(a)) == {"dataset.json", "items.parquet", "labels.parquet"}


def test_digits_dataset_shape_and_tensors(tmp_path):
    ds = load_dataset(bootstrap(tmp_path / "d"))
    assert len(ds.items) == 1797 and ds.items[ID].is_unique
    labeled = ds.labeled()
    assert sorted(labeled[LABEL].unique()) == list(ds.schema.classes)
    x, y = to_tensors(labeled, ds.schema)
    assert x.shape == (1797, 1, 8, 8) and float(x.max()) == 1.0 and float(x.min()) == 0.0
    assert y.max() == 9


def test_missing_files_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=r"missing dataset.json.*modelmill data bootstrap"):
        load_dataset(tmp_path)


def _write_idx(path, header: bytes, payload: np.ndarray):
    with gzip.open(path, "wb") as fh:
        fh.write(header + payload.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 5), ("t10k", 3)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", b"\0" * 16, rng.integers(0, 256, n * 784))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", b"\0" * 8, np.arange(n) % 10)
    items, labels = fashion_mnist.load(str(tmp_path))
    assert len(items) == 8 and items.shape[1] == 785
    assert list(labels[LABEL][:3]) == ["T-shirt/top", "Trouser", "Pullover"]
    assert labels[ID].iloc[-1] == "fmnist-test-00002"


def test_fashion_mnist_missing_names_the_debian_package(tmp_path):
    with pytest.raises(DataSourceError, match="dataset-fashion-mnist"):
        fashion_mnist.load(str(tmp_path))
