"""The whole pipeline on PostgreSQL: `modelmill up --postgres`, then `modelmill run`, `modelmill
tune --cluster local:2` and a label import through that stack, read back through the servers'
APIs (Prefect, MLflow) and the Optuna storage; the generated password appears nowhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from flows import postgres
from flows import stack as local_stack
from tests.ops.conftest import make_project
from tests.support import labelstudio_sim as sim

pytestmark = [pytest.mark.slow, pytest.mark.heavy]
TUNE = {
    "epochs": 2,
    "sampler_startup_trials": 2,
    "pruner": "none",
    "heartbeat_interval": 1,
    "grace_period": 2,
}


@pytest.fixture(scope="module")
def pg_stack():
    try:
        postgres.server_bin()
    except postgres.PostgresError as exc:
        pytest.skip(str(exc))
    base = Path(tempfile.mkdtemp(prefix="modelmill-pg-stack-"))
    base.chmod(0o755)  # as root, the server runs as `postgres` and must reach .modelmill/postgres
    project = make_project(base / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tune"] = {**params.get("tune", {}), **TUNE}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        yield local_stack.up(project, with_postgres=True)
    finally:
        local_stack.down(project)
        shutil.rmtree(base, ignore_errors=True)


def modelmill(stack: local_stack.Stack, *args: str) -> tuple[str, float]:
    """The real CLI with the stack's environment (as the worker's flow runs get it); output, seconds."""
    env = stack.env()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "-C", stack.root],
        cwd=stack.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr, time.perf_counter() - started


def api(url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def flow_runs(stack: local_stack.Stack) -> dict[str, dict]:
    """The latest flow run of each flow, by flow name, from the Prefect server's API."""
    flows = {f["id"]: f["name"] for f in api(f"{stack.prefect_api_url}/flows/filter", {})}
    started = {"state": {"type": {"not_any_": ["SCHEDULED"]}}}  # not the nightly schedule's future runs
    runs = api(f"{stack.prefect_api_url}/flow_runs/filter", {"sort": "START_TIME_DESC", "flow_runs": started})
    latest: dict[str, dict] = {}
    for run in runs:
        latest.setdefault(flows[run["flow_id"]], run)
    return latest


def mlflow_runs(stack: local_stack.Stack, filter_string: str = "") -> list[dict]:
    experiments = api(f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search", {"max_results": 100})
    ids = [e["experiment_id"] for e in experiments["experiments"]]
    found = api(
        f"{stack.mlflow_url}/api/2.0/mlflow/runs/search",
        {"experiment_ids": ids, "filter": filter_string, "max_results": 1000},
    )
    return found.get("runs", [])


def test_stack_runs_on_the_projects_own_postgresql(pg_stack):
    saved = local_stack.load_stack(pg_stack.root)
    assert set(saved.pids) == {"postgres", "prefect-server", "mlflow", "worker"}
    assert saved.mlflow_backend == f"postgresql+psycopg2://modelmill@127.0.0.1:{saved.postgres_port}/mlflow"
    data = Path(pg_stack.root, ".modelmill", "postgres", "data")
    assert (data / "PG_VERSION").exists()
    conf = (data / "postmaster.opts").read_text()
    assert "listen_addresses=127.0.0.1" in conf and f"port={saved.postgres_port}" in conf
    assert oct(postgres.passfile(pg_stack.state).stat().st_mode & 0o777) == "0o600"


def test_run_tune_on_dask_and_label_import_through_the_postgresql_stack(pg_stack):
    _, run_seconds = modelmill(pg_stack, "run", "--force")
    _, tune_seconds = modelmill(pg_stack, "tune", "--cluster", "local:2", "--trials", "2")
    export = labels_export(Path(pg_stack.root))
    imported, _ = modelmill(pg_stack, "import-labels", str(export))
    assert "tasks" in imported

    runs = flow_runs(pg_stack)
    assert {runs[f]["state_type"] for f in ("retrain", "tune", "import-labels")} == {"COMPLETED"}
    trial_tasks = api(
        f"{pg_stack.prefect_api_url}/task_runs/filter",
        {"flow_runs": {"id": {"any_": [runs["tune"]["id"]]}}, "task_runs": {"name": {"like_": "trial-"}}},
    )
    assert len(trial_tasks) == 2 and {t["state_type"] for t in trial_tasks} == {"COMPLETED"}

    retrain = mlflow_runs(pg_stack, f"tags.prefect_flow_run_id = '{runs['retrain']['id']}'")
    logged = {m["key"] for run in retrain for m in run["data"].get("metrics", [])}
    assert {"test_accuracy", "test_macro_f1", "val_loss"} <= logged
    trials = mlflow_runs(pg_stack, "tags.`optuna.trial_number` != ''")
    workers = {t["key"]: t["value"] for r in trials for t in r["data"]["tags"] if t["key"] == "worker"}
    assert len(trials) == 2 and workers and all(w.startswith("tcp://127.0.0.1:") for w in workers.values())
    versions = api(f"{pg_stack.mlflow_url}/api/2.0/mlflow/registered-models/search?max_results=100")
    assert versions["registered_models"]

    import optuna

    os.environ.update(postgres.client_env(pg_stack.state, pg_stack.postgres_port))
    storage = pg_stack.env()["MODELMILL_OPTUNA_STORAGE"]
    (study,) = optuna.get_all_study_summaries(storage)
    assert study.n_trials == 2 and study.best_trial is not None
    print(
        f"\nthrough the PostgreSQL stack: modelmill run {run_seconds:.1f} s, "
        f"tune (2 trials, local:2) {tune_seconds:.1f} s"
    )


def labels_export(project: Path) -> Path:
    """A Label Studio JSON export that confirms the labels of 6 items (two annotators)."""
    from modelmill.data import load_dataset

    dataset = load_dataset(project / "data")
    labels = dataset.labels.head(6)
    truth = [str(v) for v in labels["label"]]
    tasks = sim.simulate(list(labels["item_id"]), truth, dataset.schema.classes, {1: 1.0, 2: 1.0})
    return sim.write_json(project / "export.json", tasks)


def test_the_password_appears_in_no_log_record_or_output(pg_stack):
    password = postgres.passfile(pg_stack.state).read_text().strip().rsplit(":", 1)[1]
    assert len(password) >= 24
    state = Path(pg_stack.state)
    for path in [*state.joinpath("stack").rglob("*"), postgres.base_dir(state) / "postgres.log"]:
        if path.is_file():
            assert password not in path.read_text(errors="replace"), path
    status = subprocess.run(
        [sys.executable, "-m", "flows.stack", "status", pg_stack.root], capture_output=True, text=True
    )
    assert status.returncode == 0 and password not in status.stdout
    assert not [v for v in pg_stack.env().values() if password in v]
    for run in mlflow_runs(pg_stack):
        assert password not in json.dumps(run)


def test_sqlite_default_nightly_run_for_comparison(tmp_path):
    """The same `modelmill run` on the embedded default (ephemeral Prefect API, sqlite MLflow)."""
    project = make_project(tmp_path / "project")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "MLFLOW_TRACKING_URI"))
    }
    env.update(local_stack.project_env(project))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "-C", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"\nembedded sqlite default: modelmill run {time.perf_counter() - started:.1f} s")
