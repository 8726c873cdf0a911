"""Secrets planted in every credential setting, one retrain that tunes (on PostgreSQL with a
password), imports a Label Studio export carrying emails and compresses: no secret and no email
in the MLflow store or artifacts, the Prefect database and results, or the captured output."""

import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.support import labelstudio_sim as sim

pytestmark = pytest.mark.usefixtures("prefect_harness")

PASSWORD = "pg-Secret-93kQ"
HOOK_TOKEN = "hookToken-5aa1c7e2"
EMAIL = "jane.annotator@corp.example"


@pytest.fixture(scope="module")
def postgres():
    import tempfile

    os.environ.setdefault("MODELMILL_PG_BIN", "/usr/local/bin")  # read when the helper is imported
    from tests.ops import postgres as pg

    if reason := pg.unavailable():
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="modelmill-pg-"))
    cluster = pg.start(base)
    yield cluster
    pg.stop(cluster)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def planted(project_template, tmp_path_factory, postgres):
    """A project whose params.yaml holds the secrets, an export with emails in the inbox."""
    project = tmp_path_factory.mktemp("secrets") / "project"
    shutil.copytree(project_template, project, symlinks=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    storage = f"postgresql+psycopg2://{postgres.user}:{PASSWORD}@127.0.0.1:{postgres.port}/postgres"
    params["tune"].update(
        storage=storage,
        trials=2,
        epochs=1,
        workers=1,
        space={"train.learning_rate": {"type": "float", "low": 0.001, "high": 0.01, "log": True}},
    )
    params["ops"]["alert_webhook_url"] = f"http://127.0.0.1:9/services/T000/{HOOK_TOKEN}"
    params["compress"].update(enabled=True, budget_points=100.0, prune=False, distill=False, onnx=False)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    inbox = project / "labels" / "inbox"
    inbox.mkdir(parents=True)
    anns = [sim.annotation(1, 7, "0", as_object=True), sim.annotation(2, 8, "0")]
    anns[0]["completed_by"]["email"] = EMAIL
    sim.write_json(inbox / "export.json", [sim.task(1, "digits-0000", anns)])
    rows = sim.to_json_min([sim.task(2, "digits-0001", [sim.annotation(3, 9, "1")])])
    rows[0]["annotator"] = EMAIL
    sim.write_json(inbox / "export-min.json", rows)
    return project


def test_retrain_with_tune_import_and_compress_leaks_no_secret(planted, capfd, caplog):
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH

    from flows.retrain import RetrainParams, retrain

    summary = retrain(RetrainParams(project_dir=str(planted), tune=2, epochs=1))
    assert summary["registry"]["promoted"] and summary["compression"]["registered"]
    out = capfd.readouterr()
    places = [
        planted / "mlflow",  # the sqlite store and every artifact
        planted / ".modelmill",
        Path(PREFECT_LOCAL_STORAGE_PATH.value()),
        Path(PREFECT_HOME.value()),
    ]
    db_url = PREFECT_API_DATABASE_CONNECTION_URL.value() or ""
    if db_url.startswith("sqlite"):
        places.append(Path(db_url.split("///", 1)[1]))
    texts = {"captured output": (out.out + out.err + caplog.text).encode(), "summary": str(summary).encode()}
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        texts.update({str(p): p.read_bytes() for p in files if p.name != "annotator.key"})
    assert len(texts) > 20
    for secret in (PASSWORD, HOOK_TOKEN, EMAIL):
        leaks = [where for where, data in texts.items() if secret.encode() in data]
        assert leaks == [], f"{secret} found in {leaks}"
    # the masked form is what the run shows
    from mlflow import MlflowClient

    uri = f"sqlite:///{planted / 'mlflow' / 'mlflow.db'}"
    params = MlflowClient(uri).get_run(summary["mlflow_run_id"]).data.params
    assert (
        params["tune.storage"].startswith("postgresql+psycopg2://")
        and ":***@127.0.0.1" in params["tune.storage"]
    )
    assert params["ops.alert_webhook_url"] == "http://127.0.0.1:9/***"
