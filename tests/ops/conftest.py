"""Fixtures of the operations tests: a project copy, the local stack, a browser, PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from flows import stack as local_stack

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SOURCES = (
    "modelmill",
    "tasks",
    "flows",
    "prefect.yaml",
    "params.yaml",
    "pyproject.toml",
    ".dvc",
    ".dvcignore",
    ".gitignore",
    "data.dvc",
    "mlflow/.gitkeep",
)
# tiny training for tests: the digits, 2 epochs
TEST_PARAMS = {
    "train": {"epochs": 2, "patience": 2, "num_threads": 1, "device": "cpu"},
    "model": {"width": 8, "hidden": 32},
    "ops": {"timezone": "Europe/Berlin"},
}  # not UTC: shows the schedule takes it from config


def copy_sources(dest: Path) -> Path:
    """A project folder holding this checkout's code and configuration (no state)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
        elif src.exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def make_project(dest: Path) -> Path:
    """A git + DVC project of this checkout with a tiny training config (data bootstraps on first run)."""
    copy_sources(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for section, values in TEST_PARAMS.items():
        params.setdefault(section, {}).update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=modelmill-tests", "-c", "user.email=tests@modelmill.invalid"]
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "test project"]):
        subprocess.run(git + argv, cwd=dest, check=True, capture_output=True)
    return dest


@pytest.fixture(scope="session")
def ops_project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("ops-project"))


@pytest.fixture(scope="session")
def stack(ops_project):
    """The real local stack (Prefect server, process worker, MLflow server) on free ports."""
    running = local_stack.up(ops_project)
    try:
        yield running
    finally:
        local_stack.down(ops_project)


@pytest.fixture(scope="session")
def quick_run_result(stack):
    """One retrain run triggered exactly as the dashboard's Quick run does, run by the worker."""
    from tests.ops import prefect_api as api

    deployment = api.deployment(stack.prefect_api_url, "retrain")
    flow_run_id = api.quick_run(stack.prefect_api_url, deployment["id"])
    finished = api.wait_terminal(stack.prefect_api_url, flow_run_id)
    # the registry as this run left it, before any test retrains in the shared project
    name = yaml.safe_load((Path(stack.root) / "params.yaml").read_text())["registry"]["model_name"]
    try:
        champion = api.mlflow_get(stack.mlflow_url, "registered-models/alias", name=name, alias="champion")
        finished["champion_version"] = champion["model_version"]["version"]
    except OSError:  # no champion (the run failed): the tests say so through state_type
        finished["champion_version"] = None
    return finished


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (make system-deps, as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, request):
    """A fresh page; a full-page screenshot lands in test-artifacts/ when the test ends."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{request.node.name}-final.png", full_page=True)
    context.close()


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


@pytest.fixture
def in_stack(stack, monkeypatch):
    """Run flows in this process against the stack's servers and its Prefect result storage
    (so in-process runs and worker runs share one cache)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    for key, value in local_stack.project_env(Path(stack.root)).items():
        if key.startswith(("DVC_", "GX_", "MLFLOW_")):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.mlflow_url)
    monkeypatch.chdir(stack.root)  # as the deployment's pull step does
    from prefect.events.worker import EventsWorker

    storage = Path(stack.root, local_stack.STATE_DIR, "prefect", "storage")
    # Task-run states travel as events through one process-wide EventsWorker whose client is
    # bound to the API URL it started with (the session's test harness, when it ran first):
    # drain it on the way in and out, so this test's events reach the stack's server.
    EventsWorker.drain_all()
    with temporary_settings({PREFECT_API_URL: stack.prefect_api_url, PREFECT_LOCAL_STORAGE_PATH: storage}):
        yield stack
    EventsWorker.drain_all()
