"""Label import flow on a real project: git + DVC (local remote) + sqlite MLflow + Prefect test harness."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from modelmill.config import load_settings
from modelmill.data import Dataset, load_dataset, write_dataset
from modelmill.errors import ExportFormatError
from tests.support import labelstudio_sim as sim

UNLABELED = 60  # items of the digits bootstrap whose labels are removed: the pool export-tasks draws from


@pytest.fixture(scope="module")
def labels_template(project_template, tmp_path_factory):
    """The shared bootstrapped project, with the first UNLABELED items unlabeled (a new data version)."""
    from tasks.data import version_data

    project = tmp_path_factory.mktemp("labels-template") / "project"
    shutil.copytree(project_template, project, symlinks=True)
    ds = load_dataset(project / "data")
    write_dataset(
        project / "data", Dataset(ds.schema, ds.items, ds.labels.iloc[UNLABELED:].reset_index(drop=True))
    )
    version_data(project, load_settings(project / "params.yaml"), "unlabel a pool")
    for args in (["add", "-A"], ["commit", "-q", "-m", "unlabeled pool"]):
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)
    return project


@pytest.fixture
def labels_project(labels_template, tmp_path):
    target = tmp_path / "project"
    shutil.copytree(labels_template, target, symlinks=True)
    return target


def digest(project: Path) -> dict[str, str]:
    """Hashes of every file of data/, data.dvc and the DVC cache."""
    out = {}
    for root in (project / "data", project / ".dvc" / "cache"):
        for path in sorted(root.rglob("*")):
            if path.is_file():
                out[str(path.relative_to(project))] = hashlib.sha256(path.read_bytes()).hexdigest()
    out["data.dvc"] = hashlib.sha256((project / "data.dvc").read_bytes()).hexdigest()
    return out


def _register_tiny_champion(project: Path) -> None:
    """A small untrained CNN as champion: enough for export-tasks to rank items by uncertainty."""
    import numpy as np

    import mlflow
    from modelmill.config import ModelConfig
    from modelmill.models import build_model
    from tasks.modelstore import log_model
    from tasks.tracking import Tracker

    settings = load_settings(project / "params.yaml")
    tracker = Tracker.start(settings, project, "tiny-champion", {"flow": "test"})
    model = build_model((8, 8), 10, ModelConfig(width=4, depth=1, hidden=8)).eval()
    example = np.zeros((2, 1, 8, 8), dtype=np.float32)
    uri, tags = log_model(tracker, model, example, [str(i) for i in range(10)], project)
    version = mlflow.register_model(uri, settings.registry.model_name, tags=tags)
    tracker.client.set_registered_model_alias(settings.registry.model_name, "champion", version.version)
    tracker.finish()


def _annotate(tasks: list[dict]) -> list[dict]:
    """Label Studio's side: three annotators; disagreement, a cancellation and a rejected review."""
    out, ann_id = [], 1
    for t, task in enumerate(tasks):
        truth = task["predictions"][0]["result"][0]["value"]["choices"][0]
        other = str((int(truth) + 1) % 10)
        labels = [truth, truth, other if t % 4 == 0 else truth]
        anns = [
            sim.annotation(ann_id + a, a + 1, label, as_object=a == 0, minute=t % 60)
            for a, label in enumerate(labels)
        ]
        if t == 1:
            anns[2]["was_cancelled"] = True
        if t == 2:
            anns[0]["reviews"] = [{"accepted": False, "created_at": "2026-11-23T12:00:00Z"}]
        if t == 3:
            anns[2]["result"][0]["value"]["choices"] = [truth]
            anns[1]["result"][0]["value"]["choices"] = [other]
            anns[0]["result"][0]["value"]["choices"] = [str((int(truth) + 2) % 10)]  # three-way tie
        ann_id += 10
        lst = sim.task(t + 1, task["data"]["item_id"], anns)
        lst["data"] = task["data"]
        lst["predictions"] = task["predictions"]
        out.append(lst)
    return out


@pytest.mark.slow
def test_export_tasks_annotate_import_round_trip(prefect_harness, labels_project):
    project = labels_project
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.import_labels import ImportLabelsParams, import_labels
    from mlflow import MlflowClient
    from tasks.tracking import tracking_uri

    _register_tiny_champion(project)
    settings = load_settings(project / "params.yaml")
    outbox = project / "labels" / "outbox"
    cli = CliRunner().invoke(app, ["export-tasks", "-C", str(project), "-o", str(outbox), "--count", "20"])
    assert cli.exit_code == 0, cli.output
    assert "20 tasks (margin, champion digits-classifier/1)" in cli.output
    assert '<Choices name="label" toName="image"' in (outbox / "labeling_config.xml").read_text()
    tasks = json.loads((outbox / "tasks.json").read_text())
    assert len(tasks) == 20 and all(int(t["data"]["item_id"].split("-")[1]) < UNLABELED for t in tasks)
    assert tasks[0]["predictions"][0]["model_version"] == "digits-classifier/1"
    export = sim.write_json(project.parent / "project-1-at-2026-11-23.json", _annotate(tasks))
    before = digest(project)

    result = import_labels(ImportLabelsParams(project_dir=str(project), paths=[str(export)]))

    assert result["changed"] and result["data_version_after"] != result["data_version_before"]
    assert result["metrics"]["labels_new"] == 19 and result["metrics"]["items_for_review"] == 1
    assert result["ignored"] == {"cancelled": 1, "rejected in review": 1}
    assert digest(project)["data.dvc"] != before["data.dvc"]
    assert any((project / ".modelmill" / "dvc-remote").rglob("*")), "the new version was pushed"
    labels = pd.read_parquet(project / "data" / "labels.parquet")
    assert len(labels) == 1797 - UNLABELED + 19
    run = MlflowClient(tracking_uri(settings, project)).get_run(result["mlflow_run_id"])
    assert run.data.tags["data_version_before"] == result["data_version_before"]
    assert run.data.tags["data_version_after"] == result["data_version_after"]
    assert run.data.metrics["labels_new"] == 19 and "kappa_fleiss" in run.data.metrics
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["label-import"]))
        )
    assert artifacts and artifacts[0].type == "table"

    after_first = digest(project)
    again = import_labels(ImportLabelsParams(project_dir=str(project), paths=[str(export)]))
    assert not again["changed"] and again["data_version_after"] == result["data_version_after"]
    assert digest(project) == after_first


BAD = {
    "truncated": lambda ids: json.dumps([sim.task(1, ids[0], [sim.annotation(1, 1, "3")])] * 5)[:-40],
    "rectangles": lambda ids: json.dumps(
        [sim.task(1, ids[0], [sim.annotation(1, 1, "3", kind="rectanglelabels")])]
    ),
    "unknown ids": lambda ids: json.dumps([sim.task(1, "digits-9999", [sim.annotation(1, 1, "3")])]),
    "outside classes": lambda ids: json.dumps([sim.task(1, ids[0], [sim.annotation(1, 1, "eleven")])]),
    "empty": lambda ids: "[]",
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_export_fails_the_flow_and_leaves_data_dvc_and_cache_identical(
    prefect_harness, labels_project, case
):
    project = labels_project

    from flows.import_labels import ImportLabelsParams, import_labels
    from tasks.tracking import connect

    ids = [f"digits-{i:04d}" for i in range(UNLABELED)]
    bad = project.parent / f"{case.replace(' ', '-')}.json"
    bad.write_text(BAD[case](ids))
    before = digest(project)
    with pytest.raises(ExportFormatError, match=str(bad)):
        import_labels(ImportLabelsParams(project_dir=str(project), paths=[str(bad)]))
    assert digest(project) == before
    client, experiment = connect(load_settings(project / "params.yaml"), project)
    failed = client.search_runs([experiment], "tags.flow = 'import-labels'", max_results=1)[0]
    assert failed.info.status == "FAILED" and str(bad) in failed.data.tags["error"]


def test_cli_reports_a_bad_export_in_one_line(prefect_harness, labels_project):
    project = labels_project
    from typer.testing import CliRunner

    from flows.cli import app

    bad = project.parent / "broken.json"
    bad.write_text('[{"data": {"item_id": "digits-0001"}, "annotations": [')
    before = digest(project)
    result = CliRunner().invoke(app, ["import-labels", str(bad), "-C", str(project)])
    assert result.exit_code == 1
    assert f"error: {bad}" in result.output and "truncated" in result.output
    assert "Traceback" not in result.output
    assert digest(project) == before

    good = sim.write_json(
        project.parent / "good.json",
        [
            sim.task(1, "digits-0001", [sim.annotation(1, 1, "1"), sim.annotation(2, 2, "1")]),
            sim.task(2, "digits-0002", [sim.annotation(3, 1, "2"), sim.annotation(4, 2, "7")]),
        ],
    )
    result = CliRunner().invoke(app, ["import-labels", str(good), "-C", str(project)])
    assert result.exit_code == 0, result.output
    assert "labels: 1 new, 0 changed, 0 unchanged; 1 items for review" in result.output
    assert "agreement: {'kappa_cohen':" in result.output and "new data version" in result.output


@pytest.mark.slow
def test_retrain_imports_new_inbox_exports_first(prefect_harness, labels_project):
    project = labels_project
    from flows.retrain import RetrainParams, retrain

    inbox = project / "labels" / "inbox"
    inbox.mkdir(parents=True)
    sim.write_json(
        inbox / "export.json",
        [sim.task(1, "digits-0000", [sim.annotation(1, 1, "0"), sim.annotation(2, 2, "0")])],
    )
    before = digest(project)["data.dvc"]
    summary = retrain(RetrainParams(project_dir=str(project), epochs=1))
    assert digest(project)["data.dvc"] != before
    labels = pd.read_parquet(project / "data" / "labels.parquet").set_index("item_id")
    assert labels.loc["digits-0000", "label"] == "0"
    from tasks.data import data_version

    assert summary["data_version"] == data_version(project, load_settings(project / "params.yaml"))
