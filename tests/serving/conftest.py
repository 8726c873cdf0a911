"""A project with a real champion (retrain, 1 epoch) and the real `modelmill serve` on a free port,
started in its own process group and stopped by killing that group."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from flows.stack import free_port

MODEL = "digits-classifier"


@pytest.fixture(scope="session")
def served_project(project_template, tmp_path_factory, prefect_harness) -> Path:
    """A copy of the template with one retrained champion (v1) and a fast alias poll, shared by the
    serving tests (a test that moves the alias puts it back)."""
    from flows.retrain import RetrainParams, retrain

    root = tmp_path_factory.mktemp("serving") / "project"
    shutil.copytree(project_template, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["serve"]["poll_seconds"] = 0.5
    params["drift"]["enabled"] = False
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    retrain(RetrainParams(project_dir=str(root), epochs=1))
    return root


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.get(self.url + path, **kwargs)

    def post(self, path: str, body, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.post(self.url + path, json=body, **kwargs)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(project: Path, *args: str, env: dict | None = None, ready: bool = True) -> Server:
    port = free_port()
    log = project / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "flows.cli", "serve", "-C", str(project), "--port", str(port), *args]
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}, **(env or {})}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 90
    while ready and time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}:\n{server.output()}")
        try:
            if server.get("/health", timeout=1).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    if ready:
        stop_server(server)
        raise AssertionError(f"serve not healthy in 90 s:\n{server.output()}")
    return server


def stop_server(server: Server) -> None:
    """SIGTERM to the server's process group, SIGKILL if it lingers (never by name)."""
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(served_project):
    running = start_server(served_project)
    yield running
    stop_server(running)


def digits_rows(project: Path, n: int) -> list[list[float]]:
    """n digits items as raw pixel lists (the friendly /predict form), from the project's data."""
    import pandas as pd

    items = pd.read_parquet(next((project / "data").glob("items*.parquet")))
    pixels = items[[c for c in items.columns if c.startswith("px")]].to_numpy(dtype=float)
    return [list(map(float, row)) for row in pixels[:n]]


def example_inputs(client, version: str, tmp: Path) -> list:
    """The stored input example of a version (model inputs, the /invocations form)."""
    import mlflow.artifacts

    source = client.get_model_version(MODEL, version).source
    local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp))
    return json.loads(Path(local, "input_example.json").read_text())
