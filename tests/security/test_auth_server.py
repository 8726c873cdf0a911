"""A retrain against an MLflow server with its basic-auth app: anonymous requests are refused,
the run logs and registers with credentials from MLFLOW_TRACKING_USERNAME/PASSWORD, and the
password reaches neither the run's params nor the captured output."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from flows.stack import free_port

pytestmark = [
    pytest.mark.usefixtures("prefect_harness"),
    pytest.mark.skipif(
        importlib.util.find_spec("flask_wtf") is None,
        reason="mlflow[auth] is not installed (Flask-WTF missing): pip install 'mlflow[auth]'",
    ),
]
# MLflow 3.17 ships no default admin password: the server creates the admin from this variable
ADMIN, DEFAULT_PASSWORD = "admin", "test-only-admin-password-1234"


@pytest.fixture
def auth_server(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_AUTH_CONFIG_PATH"}
    env |= {
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-secret",
        "MLFLOW_AUTH_ADMIN_PASSWORD": DEFAULT_PASSWORD,
    }
    cmd = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
           "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
           "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the MLflow basic-auth server exited with {proc.returncode}")
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(1)
        else:
            pytest.fail("the MLflow basic-auth server did not come up in 120 s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_retrain_against_an_authenticated_mlflow_server(auth_server, project, monkeypatch, capfd):
    from flows.retrain import RetrainParams, retrain
    from mlflow import MlflowClient

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{auth_server}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
    assert refused.value.code == 401
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", DEFAULT_PASSWORD)
    summary = retrain(RetrainParams(project_dir=str(project), epochs=1))
    client = MlflowClient(auth_server)
    version = client.get_model_version(summary["registry"]["name"], summary["registry"]["version"])
    assert "modelmill.manifest" in version.tags
    params = client.get_run(summary["mlflow_run_id"]).data.params
    out = capfd.readouterr()
    assert DEFAULT_PASSWORD not in str(params) + out.out + out.err
