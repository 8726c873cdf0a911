"""Failure alerting: a failed run leaves a failure summary artifact and calls the configured webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from tests.ops import prefect_api as api

pytestmark = [pytest.mark.slow]


@pytest.fixture
def webhook():
    """A tiny HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/alerts", received
    finally:
        server.shutdown()
        server.server_close()


def test_failed_run_records_summary_and_calls_webhook(ops_project, in_stack, webhook):
    from flows.retrain import RetrainParams, retrain

    url, received = webhook
    params = yaml.safe_load((ops_project / "params.yaml").read_text())
    params["validation"]["min_rows"] = 10**7  # the dataset cannot pass: validation fails
    params["ops"] = {"alert_webhook_url": url}
    (ops_project / "failing.yaml").write_text(yaml.safe_dump(params))

    state = retrain(RetrainParams(project_dir=str(ops_project), config="failing.yaml"), return_state=True)
    assert state.is_failed()

    [alert] = received
    assert alert["flow"] == "retrain" and alert["state"] == "FAILED"
    assert "validate" in {t["task"].rsplit("-", 1)[0] for t in alert["failed_tasks"]}
    assert "min_rows" in alert["error"] or "rows" in alert["error"]
    assert alert["flow_run_url"].startswith(in_stack.prefect_url)
    flow_run_id = alert["flow_run_id"]
    artifacts = api.call(
        f"{in_stack.prefect_api_url}/artifacts/filter",
        {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": ["retrain-failure"]}}},
    )
    assert artifacts and "validate" in artifacts[0]["data"] and "Error" in artifacts[0]["data"]
