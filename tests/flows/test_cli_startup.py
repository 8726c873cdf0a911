"""The one-shot CLI start-up (flows/warmup.py): Prefect's ephemeral API boots in its own
process beside the imports and answers when the flow starts; with a server URL nothing boots."""

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.warmup import imports_without_gc, start_ephemeral_api

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import gc, os, httpx
from flows.env import configure
configure(os.environ["PROJECT"])
from flows.warmup import one_shot_run
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import get_current_settings
with one_shot_run():
    server = SubprocessASGIServer()
    assert server.running, "the ephemeral API is not started"
    assert httpx.get(server.api_url + "/health").status_code == 200
    assert get_current_settings().flows.heartbeat_frequency is None  # nothing outlives the run
    assert gc.isenabled() and gc.get_freeze_count() > 100_000  # the imported stack is frozen
    import great_expectations, mlflow.pytorch  # noqa: F401 - already imported: no cost here
    print("server pid", server.server_process.pid, flush=True)
assert get_current_settings().flows.heartbeat_frequency == 180
server.stop()
"""


def test_the_ephemeral_api_answers_when_the_flow_starts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PROJECT=str(tmp_path), PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    pid = int(out.stdout.split("server pid")[1].split()[0])
    with pytest.raises(ProcessLookupError):  # stopped with the run, by its PID
        os.kill(pid, 0)


def test_with_a_server_url_no_ephemeral_api_starts():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert start_ephemeral_api() is None


def test_the_collector_is_on_again_after_a_failed_import():
    collector_during = []

    def failing_import() -> None:
        with imports_without_gc():
            collector_during.append(gc.isenabled())
            import modelmill_no_such_module  # noqa: F401

    with pytest.raises(ModuleNotFoundError):
        failing_import()
    assert collector_during == [False] and gc.isenabled()
