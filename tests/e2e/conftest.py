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


def git_clone(target: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True)
    for key, value in (("user.email", "e2e@modelmill.local"), ("user.name", "e2e")):
        subprocess.run(["git", "config", key, value], cwd=target, check=True)
    return target


@pytest.fixture
def clone(tmp_path) -> Path:
    """A clone of the committed tree, one per test: each starts from what a new user gets, in any order
    (a module-wide clone made `data bootstrap` and `run` depend on which test went first)."""
    return git_clone(tmp_path / "modelmill")
