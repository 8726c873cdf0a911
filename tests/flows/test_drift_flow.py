"""Drift end to end: a champion, then the data rotated by the test; real Prefect, MLflow, DVC."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.drift import drift
from flows.params import DriftParams
from flows.retrain import RetrainParams, retrain
from modelmill.augment import rotated
from modelmill.config import load_settings
from modelmill.data import Dataset, load_dataset, to_tensors, write_dataset
from modelmill.errors import DriftDetected
from tasks.data import version_data
from tests.support.mlflow_store import client_for

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def champion_project(project_template, tmp_path_factory) -> tuple[Path, str]:
    """A project with a champion trained on the bootstrap version; returns (project, that md5)."""
    target = tmp_path_factory.mktemp("drift") / "project"
    shutil.copytree(project_template, target, symlinks=True)
    first = retrain(RetrainParams(project_dir=str(target)))
    return target, first["data_version"]


def rotate_data(project: Path) -> str:
    """Rotate every image by 15 degrees, record it as a new data version; returns its md5."""
    dataset = load_dataset(project / "data")
    x, _ = to_tensors(dataset.items.assign(label="0"), dataset.schema)
    pixels = (rotated(x, 15.0) * 16).round().clamp(0, 16).reshape(len(x), -1).numpy().astype("uint8")
    items = dataset.items.copy()
    items[dataset.schema.feature_columns] = pixels
    write_dataset(project / "data", Dataset(dataset.schema, items, dataset.labels))
    return version_data(project, load_settings(project / "params.yaml"), "rotated")


def test_the_same_version_is_no_drift_and_the_report_is_on_the_run(champion_project):
    project, version = champion_project
    result = drift(DriftParams(project_dir=str(project), reference="champion", current="workspace"))
    assert not result["drifted"]
    run = client_for(project).get_run(result["mlflow_run_id"])
    assert run.data.tags["drift"] == "none"
    assert run.data.tags["drift_reference"] == run.data.tags["drift_current"] == version
    paths = {a.path for a in client_for(project).list_artifacts(run.info.run_id, "drift")}
    assert paths == {"drift/drift.json", "drift/drift.html", "drift/drift.md"}


def test_rotated_data_is_drift_for_the_flow_the_stage_and_the_cli(champion_project, tmp_path):
    project = Path(shutil.copytree(champion_project[0], tmp_path / "project", symlinks=True))
    old, new = champion_project[1], rotate_data(project)
    assert new != old
    result = drift(DriftParams(project_dir=str(project), reference=old, current="workspace"))
    assert result["drifted"] and "embeddings" in result["markdown"]
    assert client_for(project).get_run(result["mlflow_run_id"]).data.tags["drift"] == "detected"
    # the retrain stage compares the new version with the champion's and fails as configured
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["drift"] = {**params.get("drift", {}), "on_drift": "fail"}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(DriftDetected, match="embeddings"):
        retrain(RetrainParams(project_dir=str(project)))
    cli = Path(sys.executable).with_name("modelmill")
    done = subprocess.run([str(cli), "drift", "--from", "champion", "--to", "workspace",
                           "--fail-on-drift", "-C", str(project)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "drift detected" in done.stdout


def test_a_table_is_checked_through_the_champions_preprocessor_column_by_column(project):
    """Tabular drift: embeddings of what the champion sees (its fitted preprocessor) and a test
    per raw column; a shifted column is named, the others are not."""
    from modelmill.data import bootstrap

    shutil.rmtree(project / "data")
    bootstrap(project / "data", "breast_cancer")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["source"], params["registry"]["model_name"] = "breast_cancer", "cancer"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    first = retrain(RetrainParams(project_dir=str(project), epochs=2))
    same = drift(DriftParams(project_dir=str(project), reference="champion", current="workspace"))
    assert not same["drifted"]
    features = {t["name"] for t in same["report"]["tests"] if t["name"].startswith("feature:")}
    assert len(features) == 30  # one test per raw column of the table
    dataset = load_dataset(project / "data")
    items = dataset.items.copy()
    column = dataset.schema.feature_columns[0]
    items[column] = items[column] * 1.5 + items[column].std()  # one column moves
    write_dataset(project / "data", Dataset(dataset.schema, items, dataset.labels))
    version_data(project, load_settings(project / "params.yaml"), "shifted")
    params = DriftParams(project_dir=str(project), reference=first["data_version"], current="workspace")
    shifted = drift(params)
    drifted = {t["name"] for t in shifted["report"]["tests"] if t["drifted"]}
    assert shifted["drifted"] and f"feature:{column}" in drifted
    assert not any(t.startswith("feature:") and t != f"feature:{column}" for t in drifted), drifted
    methods = {t["method"] for t in shifted["report"]["tests"] if t["name"] in features}
    assert methods == {"evidently: kolmogorov-smirnov"}  # 30 numeric columns, through Evidently
    logged = {a.path for a in client_for(project).list_artifacts(shifted["mlflow_run_id"], "drift")}
    assert {"drift/drift.json", "drift/drift.html", "drift/features.html"} <= logged  # Evidently's page
