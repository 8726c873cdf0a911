"""`modelmill ui`: the MLflow server over the project's store, on 127.0.0.1, stopped by PID."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_project_store(project):
    from mlflow import MlflowClient

    uri = f"sqlite:///{project / 'mlflow' / 'mlflow.db'}"
    (project / "mlflow").mkdir(exist_ok=True)
    MlflowClient(uri).create_experiment("seen-by-the-ui")
    port = free_port()
    cli = str(Path(sys.executable).with_name("modelmill"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    proc = subprocess.Popen(
        [cli, "ui", "-C", str(project), "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        body = urllib.request.urlopen(
            f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=seen-by-the-ui", timeout=5
        ).read()
        assert json.loads(body)["experiment"]["name"] == "seen-by-the-ui"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
