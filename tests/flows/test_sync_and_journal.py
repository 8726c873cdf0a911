"""Sync never invents data; the next writer finishes an interrupted label import (real DVC, Prefect)."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelmill import journal
from modelmill.config import load_settings
from modelmill.errors import DataSyncError
from tests.support import labelstudio_sim as sim
from tests.support.labelstudio_sim import tree_digest

pytestmark = pytest.mark.usefixtures("prefect_harness")


def relabel_export(
    folder: Path, name: str = "export.json", item: str = "digits-0000", label: str = "5"
) -> Path:
    """Two annotators agree on a new label for one item: a label change, so a new data version."""
    return sim.write_json(
        folder / name, [sim.task(1, item, [sim.annotation(1, 1, label), sim.annotation(2, 2, label)])]
    )


def pointer_md5(project: Path) -> str:
    return yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]


def fresh_worker(project: Path) -> None:
    """What a new machine has: the git checkout (data.dvc) but no data/ and no DVC cache."""
    shutil.rmtree(project / "data")
    shutil.rmtree(project / ".dvc" / "cache", ignore_errors=True)


def test_unreachable_remote_after_a_label_import_fails_naming_it_and_writes_nothing(project):
    from flows.import_labels import ImportLabelsParams, import_labels
    from flows.retrain import RetrainParams, retrain

    imported = import_labels(
        ImportLabelsParams(project_dir=str(project), paths=[str(relabel_export(project.parent))])
    )
    assert imported["changed"] and pointer_md5(project) == imported["data_version_after"]
    fresh_worker(project)
    remote = project / ".modelmill" / "dvc-remote"
    remote.rename(remote.with_name("dvc-remote-away"))  # the remote is unreachable
    pointer_before = (project / "data.dvc").read_bytes()

    with pytest.raises(DataSyncError) as failure:
        retrain(RetrainParams(project_dir=str(project), epochs=1))

    message = str(failure.value)
    assert "remote 'local'" in message and imported["data_version_after"] in message
    assert "\n" not in message
    assert (project / "data.dvc").read_bytes() == pointer_before
    assert not (project / "data").exists() or not any((project / "data").rglob("*.parquet"))
    # back online: the next run pulls the imported version, the relabelled item included
    remote.with_name("dvc-remote-away").rename(remote)
    from tasks.data import sync_data

    assert sync_data(str(project), load_settings(project / "params.yaml")) == imported["data_version_after"]
    labels = pd.read_parquet(project / "data" / "labels.parquet").set_index("item_id")
    assert labels.loc["digits-0000", "label"] == "5"


def test_the_builtin_version_is_bootstrapped_when_the_remote_has_nothing(project):
    from tasks.data import sync_data

    version = pointer_md5(project)
    fresh_worker(project)
    shutil.rmtree(project / ".modelmill" / "dvc-remote", ignore_errors=True)
    assert sync_data(str(project), load_settings(project / "params.yaml")) == version
    assert pointer_md5(project) == version


def test_a_label_import_killed_before_its_data_version_is_finished_by_the_next_sync(project, tmp_path):
    from flows.import_labels import ImportLabelsParams, import_labels
    from tasks.data import sync_data
    from tasks.labels import inbox_exports, merge_exports

    settings = load_settings(project / "params.yaml")
    reference = tmp_path / "reference"
    shutil.copytree(project, reference, symlinks=True)
    inbox = project / settings.labels.inbox
    inbox.mkdir(parents=True)
    export = relabel_export(inbox)
    shutil.copytree(inbox, reference / settings.labels.inbox)
    expected = import_labels(ImportLabelsParams(project_dir=str(reference)))["data_version_after"]

    merge_exports(str(project), settings, [str(export)])  # data/ written ... then the process dies
    assert [e.op for e in journal.pending(project)] == ["import-labels"]
    assert inbox_exports(project, settings) == [str(export)], "archived but not recorded: still new"

    assert sync_data(str(project), settings) == expected
    assert journal.pending(project) == [] and inbox_exports(project, settings) == []
    assert tree_digest(project / "data") == tree_digest(reference / "data")
