"""The service follows the champion alias under load: zero failed requests, no old answer after
the first new one, the new version served within the poll interval; a tampered version is never
served (the old one stays, the refusal is reported)."""

import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import requests
import torch

from tasks.aliases import CHAMPION, alias_target, move_alias
from tests.serving.conftest import MODEL, start_server, stop_server
from tests.support.mlflow_store import client_for

BODY = {"inputs": [[0.0] * 64]}


@pytest.fixture(scope="module")
def versions(served_project, tmp_path_factory):
    """(v1 the champion, v2 the same verified bytes as a new version, v3 tampered after registration)."""
    import mlflow.artifacts

    client = client_for(served_project)
    first = alias_target(client, MODEL, CHAMPION)
    mv = client.get_model_version(MODEL, first)
    second = client.create_model_version(MODEL, mv.source, mv.run_id, tags=mv.tags).version
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=mv.source, dst_path=str(tmp_path_factory.mktemp("v"))
        )
    )
    (local / "registered_model_meta").unlink(missing_ok=True)
    experiment = client.get_run(mv.run_id).info.experiment_id
    run = client.create_run(experiment, run_name="tampered")
    client.log_artifacts(run.info.run_id, str(local), "model")
    stored = next((Path(unquote(urlparse(run.info.artifact_uri).path)) / "model").rglob("model.safetensors"))
    from safetensors.torch import load_file, save_file

    save_file({k: torch.zeros_like(v) for k, v in load_file(stored).items()}, stored)  # same size, new bytes
    third = client.create_model_version(
        MODEL, f"{run.info.artifact_uri}/model", run.info.run_id, tags=mv.tags
    )
    yield first, str(second), str(third.version)
    current = alias_target(client, MODEL, CHAMPION)
    if current != first:
        move_alias(client, MODEL, CHAMPION, first, current, "test teardown", "tests")


@pytest.fixture(scope="module")
def server(served_project, versions):
    running = start_server(served_project)
    yield running
    stop_server(running)


class Load:
    """A bounded load: `threads` clients posting BODY back to back, each answer recorded as
    (sent, received, status, X-Model-Version)."""

    def __init__(self, url: str, threads: int = 3, limit: int = 3000):
        self.url, self.limit, self.stop = url + "/invocations", limit, threading.Event()
        self.records: list[tuple[float, float, int, str]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(threads)]

    def client(self) -> None:
        session = requests.Session()
        while not self.stop.is_set() and len(self.records) < self.limit:
            sent = time.monotonic()
            try:
                r = session.post(self.url, json=BODY, timeout=10)
                record = (sent, time.monotonic(), r.status_code, r.headers.get("X-Model-Version", ""))
            except requests.RequestException:
                record = (sent, time.monotonic(), 0, "")
            with self.lock:
                self.records.append(record)

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)

    def first_answer_from(self, version: str, after: float, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = [rec[1] for rec in self.records if rec[3] == version and rec[0] >= after]
            if got:
                return min(got)
            time.sleep(0.05)
        raise AssertionError(f"v{version} not served within {timeout} s")


def test_the_service_follows_the_alias_under_load_with_no_failed_request(server, served_project, versions):
    first, second, _ = versions
    client = client_for(served_project)
    with Load(server.url) as load:
        time.sleep(1.0)
        flips = []  # (new version, flipped at, first answer from it at)
        for old, new in ((first, second), (second, first)):
            flipped = time.monotonic()
            move_alias(client, MODEL, CHAMPION, new, old, "flip under load", "tests")
            flips.append((new, flipped, load.first_answer_from(new, after=flipped)))
            time.sleep(1.0)
    records = load.records
    assert len(records) > 100
    assert [r for r in records if r[2] != 200] == []  # zero failed requests
    for new, flipped, seen in flips:
        assert seen - flipped <= 5.0, f"v{new} served {seen - flipped:.1f} s after the flip"
    # once a client has an answer from the new version, every request sent after it gets the new one
    (v2, _, seen2), (v1, flipped1, seen1) = flips
    assert {r[3] for r in records if seen2 <= r[0] < flipped1} == {v2}
    assert {r[3] for r in records if r[0] >= seen1} == {v1}
    assert server.get("/version").json()["swaps"] == 3  # the first load, then two flips


def test_a_tampered_version_is_never_served(server, served_project, versions):
    first, _, tampered = versions
    client = client_for(served_project)
    assert server.get("/health").headers["X-Model-Version"] == first
    with Load(server.url, threads=2, limit=1000) as load:
        flipped = time.monotonic()
        move_alias(client, MODEL, CHAMPION, tampered, first, "tampered", "tests")
        deadline = flipped + 10
        while tampered not in server.get("/version").json()["rejected"] and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # three more polls: the refusal is not retried into service
    assert {r[3] for r in load.records} == {first} and {r[2] for r in load.records} == {200}
    why = server.get("/version").json()["rejected"][tampered]
    assert (
        f"{MODEL} v{tampered}: data/challenger/model.safetensors: sha256 does not match the manifest" in why
    )
    assert "modelmill_rejected_versions 1.0" in server.get("/metrics").text
    assert f"refused {MODEL} v{tampered}, still serving v{first}" in server.output()
    move_alias(client, MODEL, CHAMPION, first, tampered, "back from the tampered version", "tests")
