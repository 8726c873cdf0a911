"""The local stack: servers on free ports, health checks, PIDs, and both UIs in Chromium."""

from __future__ import annotations

import json
import urllib.request

import pytest

from flows import stack as local_stack
from tests.ops.conftest import shot

pytestmark = [pytest.mark.slow]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_up_records_pids_ports_and_logs(stack, ops_project):
    saved = local_stack.load_stack(ops_project)
    assert saved is not None and set(saved.pids) == {"mlflow", "prefect-server", "worker"}
    assert saved.prefect_port == stack.prefect_port and saved.mlflow_port == stack.mlflow_port
    for name in saved.pids:
        assert stack.log(name).exists()
    assert local_stack.healthy(f"{stack.prefect_api_url}/health")
    assert local_stack.healthy(f"{stack.mlflow_url}/health")
    assert local_stack.healthy(f"http://127.0.0.1:{stack.worker_port}/health")


def test_work_pool_is_a_process_pool(stack):
    pool = _get(f"{stack.prefect_api_url}/work_pools/{local_stack.WORK_POOL}")
    assert pool["type"] == "process"


@pytest.mark.browser
def test_both_uis_render(stack, page):
    page.goto(f"{stack.mlflow_url}/#/experiments")
    page.get_by_text("Default").first.wait_for()
    shot(page, "stack-mlflow-experiments")
    page.goto(f"{stack.prefect_url}/work-pools")
    page.get_by_text("modelmill-process").first.wait_for()
    shot(page, "stack-prefect-work-pools")
