"""Trials on a Dask cluster through prefect-dask: task runs on workers, the worker's address
in MLflow, a worker killed mid-trial loses no trial. Real LocalCluster, sqlite stores, tiny budgets."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState
from test_tune_flow import configure_tuning, load_study, trial_runs

from modelmill.config import load_settings
from modelmill.errors import ConfigError
from modelmill.kinds import image as image_kind

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("spec", ["local:0", "local:two", "dask://h:1", "tcp://host", "tcp:/h:8786"])
def test_cluster_spec_is_checked_at_load_naming_the_key(spec):
    with pytest.raises(ConfigError, match=r"tune\.cluster.*is not local:N"):
        load_settings(None, {"tune.cluster": spec})


def test_cli_rejects_a_bad_cluster_in_one_line(project):
    argv = [sys.executable, "-m", "flows.cli", "tune", "-C", str(project), "--cluster", "local:x"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tune.cluster" in errors[0] and "'local:x' is not local:N" in errors[0]


def test_every_trial_is_a_task_run_on_a_dask_worker(project, prefect_harness):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.tune import TuneParams, tune

    # tune.space: null, the default: the data kind's search space (it once failed on Dask only)
    result = tune(
        TuneParams(project_dir=str(configure_tuning(project, space=None)), trials=4, cluster="local:2")
    )
    study = load_study(project)
    assert result["states"]["complete"] == 4 == len(study.trials)
    assert {k for t in study.trials for k in t.params} == set(image_kind.SEARCH_SPACE)
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    runs = trial_runs(project, result["study_name"])
    assert sorted((r.data.tags["optuna.trial_number"], r.data.tags["worker"]) for r in runs) == sorted(
        (str(t.number), t.user_attrs["worker"]) for t in study.trials
    )
    tune_run_id = runs[0].data.tags["prefect_flow_run_id"]
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[tune_run_id]))
        )
    trials = [t for t in task_runs if t.name.startswith("trial-")]
    assert len(trials) == 4 and all(t.state.is_completed() for t in trials)


def tune_cli(project: Path, *args: str) -> subprocess.Popen:
    """`modelmill tune` in its own process group (its Dask workers too), on the session's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value()}
    argv = [sys.executable, "-m", "flows.cli", "tune", "-C", str(project), *args]
    out = (project / "tune.log").open("w")
    return subprocess.Popen(
        argv, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def finished(proc: subprocess.Popen, project: Path, timeout: float = 900) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log = (project / "tune.log").read_text()
    assert proc.returncode == 0, log[-6000:]


def running_trial_pids(db: Path) -> list[int]:
    """PIDs of the Dask workers running a trial now (read-only peek at the Optuna storage)."""
    query = (
        "SELECT a.value_json FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
        "WHERE t.state = 'RUNNING' AND a.key = 'worker_pid'"
    )
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
            return [json.loads(row[0]) for row in conn.execute(query)]
    except sqlite3.OperationalError:
        return []


@pytest.mark.slow
@pytest.mark.heavy
def test_killing_a_dask_worker_mid_trial_loses_no_trial(project, prefect_harness):
    configure_tuning(project, epochs=15)  # trials of several seconds: the kill lands inside one
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["patience"] = 15
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = tune_cli(project, "--trials", "3", "--cluster", "local:2")
    deadline = time.monotonic() + 240
    while not (pids := running_trial_pids(project / "optuna" / "optuna.db")):
        if time.monotonic() > deadline or proc.poll() is not None:
            finished(proc, project, timeout=1)
            pytest.fail("no trial started in time")
        time.sleep(0.3)
    time.sleep(1.0)  # inside the trial's training
    os.kill(pids[0], signal.SIGKILL)
    finished(proc, project)

    study = load_study(project)
    stale = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(stale) == 1 and stale[0].user_attrs["worker_pid"] == pids[0]
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == stale[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == stale[0].params
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) >= 3
    logged = {r.data.tags["optuna.trial_number"]: r.data.tags for r in trial_runs(project, study.study_name)}
    assert logged[str(stale[0].number)]["optuna.state"] == "fail"
    assert logged[str(stale[0].number)]["worker"] == stale[0].user_attrs["worker"]
    assert len(logged) == len(study.trials)
