"""Scale-out on one machine: the MLflow server and an Optuna study on a real PostgreSQL."""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.request
from pathlib import Path

import pytest

from flows import stack as local_stack
from tests.ops import postgres

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    reason = postgres.unavailable()
    if reason:
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="modelmill-pg-"))
    running = postgres.start(base)
    try:
        yield running
    finally:
        postgres.stop(running)
        shutil.rmtree(base, ignore_errors=True)


def test_optuna_study_on_postgresql_shared_by_parallel_workers(cluster):
    import optuna

    postgres.create_database(cluster, "optuna")
    storage = cluster.url("optuna", driver="postgresql+psycopg2")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="scale-out", storage=storage, direction="minimize")
    study.optimize(lambda trial: (trial.suggest_float("x", -5, 5) - 1) ** 2, n_trials=8, n_jobs=2)
    resumed = optuna.load_study(study_name="scale-out", storage=storage)
    assert len(resumed.trials) == 8 and resumed.best_value < 25


def test_mlflow_server_on_postgresql(cluster, tmp_path):
    from mlflow import MlflowClient

    postgres.create_database(cluster, "mlflow")
    server = local_stack.Stack(
        root=str(tmp_path),
        prefect_port=0,
        mlflow_port=local_stack.free_port(),
        worker_port=0,
        mlflow_backend=cluster.url("mlflow", driver="postgresql+psycopg2"),
    )
    local_stack.spawn_mlflow(server)
    try:
        local_stack.wait_healthy(server, "mlflow", f"{server.mlflow_url}/health", timeout=120)
        client = MlflowClient(tracking_uri=server.mlflow_url)
        run = client.create_run(client.create_experiment("scale-out"))
        client.log_metric(run.info.run_id, "val_accuracy", 0.97)
        with urllib.request.urlopen(
            f"{server.mlflow_url}/api/2.0/mlflow/runs/get?run_id={run.info.run_id}"
        ) as r:
            metrics = json.loads(r.read())["run"]["data"]["metrics"]
        assert metrics == [
            {"key": "val_accuracy", "value": 0.97, "timestamp": metrics[0]["timestamp"], "step": 0}
        ]
    finally:
        local_stack.down(tmp_path)
