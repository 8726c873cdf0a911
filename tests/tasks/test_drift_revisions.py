"""Data versions for drift read back from DVC: by md5 (cache), by git revision (dvc.api), errors."""

import pytest
import yaml

from modelmill.config import load_settings
from modelmill.data import load_dataset
from modelmill.drift_inputs import sample_of_dataset, sample_of_inputs
from modelmill.errors import DriftError
from tasks.drift import materialize


def test_a_version_by_md5_and_by_git_revision_is_the_committed_data(project, tmp_path):
    settings = load_settings(project / "params.yaml")
    md5 = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    by_md5, folder = materialize(str(project), settings, md5.removesuffix(".dir"), tmp_path / "a")
    by_git, git_folder = materialize(str(project), settings, "HEAD", tmp_path / "b")
    assert by_md5 == by_git == md5
    original = load_dataset(project / "data")
    for copy in (folder, git_folder):
        assert load_dataset(copy).items.equals(original.items)
    sample, schema = sample_of_dataset(folder, by_md5)
    assert len(sample) == 1797 and sample.labels[:3] == ["0", "1", "2"]
    # the same items as a Parquet file of inputs (no labels): the current side of serving drift
    original.items.to_parquet(tmp_path / "inputs.parquet")
    inputs = sample_of_inputs(tmp_path / "inputs.parquet", schema)
    assert inputs.labels is None and inputs.x.shape == sample.x.shape


def test_unknown_revisions_and_bad_inputs_name_the_problem(project, tmp_path):
    settings = load_settings(project / "params.yaml")
    with pytest.raises(DriftError, match="neither the DVC cache nor the local remote"):
        materialize(str(project), settings, "0" * 32, tmp_path / "a")
    with pytest.raises(DriftError, match="'no-such-branch' is neither"):
        materialize(str(project), settings, "no-such-branch", tmp_path / "b")
    schema = load_dataset(project / "data").schema
    (tmp_path / "bad.csv").write_text("item_id,px0\nx-1,3\n")
    with pytest.raises(DriftError, match="missing feature columns px1"):
        sample_of_inputs(tmp_path / "bad.csv", schema)
