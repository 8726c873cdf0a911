"""The real `modelmill` CLI on a fresh git clone of this repository, one clone per test."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("modelmill"))


def modelmill(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env["COLUMNS"] = "120"
    return subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def clone(tmp_path) -> Path:
    """A clone of the committed tree with no state: each test starts from what a new user gets."""
    target = tmp_path / "modelmill"
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True)
    for key, value in (("user.email", "e2e@modelmill.local"), ("user.name", "e2e")):
        subprocess.run(["git", "config", key, value], cwd=target, check=True)
    return target
