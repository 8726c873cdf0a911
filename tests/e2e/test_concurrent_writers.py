"""Two label imports and a retrain started at once (real CLI processes) end as if run one after another."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelmill import journal
from modelmill.config import load_settings
from modelmill.labels import import_exports
from tests.support import labelstudio_sim as sim

CLI = str(Path(sys.executable).with_name("modelmill"))
MODEL = "digits-classifier"

pytestmark = pytest.mark.heavy


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING", "DVC_"))}
    return {**env, "COLUMNS": "120"}


def start(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [CLI, *args, "-C", str(project)],
        cwd=project,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def export(folder: Path, name: str, item: str, label: str, first_id: int) -> Path:
    anns = [sim.annotation(first_id, 1, label), sim.annotation(first_id + 1, 2, label)]
    return sim.write_json(folder / name, [sim.task(first_id, item, anns)])


@pytest.mark.slow
def test_two_imports_and_a_retrain_at_once_end_as_if_sequential(project, tmp_path):
    settings = load_settings(project / "params.yaml")
    a = export(tmp_path, "a.json", "digits-0000", "5", 1)
    b = export(tmp_path, "b.json", "digits-0001", "7", 11)
    # the state of the imports run one after another, from the core on a copy
    reference = tmp_path / "reference"
    shutil.copytree(project / "data", reference)
    import_exports(reference, [a], settings.labels)
    import_exports(reference, [b], settings.labels)
    expected = journal.folder_md5(reference)
    warm = subprocess.run([CLI, "data", "status", "-C", str(project)], env=cli_env(), capture_output=True)
    assert warm.returncode == 0, warm.stderr

    procs = [
        start(project, "import-labels", str(a)),
        start(project, "run", "--epochs", "1"),
        start(project, "import-labels", str(b)),
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]

    assert [p.returncode for p in procs] == [0, 0, 0], "\n----\n".join(o[-2500:] for o in outputs)
    pointer = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    assert pointer == expected == journal.folder_md5(project / "data")
    labels = pd.read_parquet(project / "data" / "labels.parquet").set_index("item_id")["label"]
    assert (labels["digits-0000"], labels["digits-0001"]) == ("5", "7")
    assert journal.pending(project) == []
    from mlflow import MlflowClient

    uri = f"sqlite:///{project / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    (version,) = client.search_model_versions(f"name = '{MODEL}'")
    assert client.get_model_version_by_alias(MODEL, "champion").version == version.version
    run = client.get_run(version.tags["mlflow_run_id"])
    assert run.data.tags["data_version"] == version.tags["data_version"]  # trained on one whole version
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert not client.search_runs(experiments, "attributes.status = 'RUNNING'")
