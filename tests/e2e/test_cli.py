"""The real CLI, as a user runs it, on a fresh clone of this repository."""

import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, modelmill


def test_help_lists_the_commands(tmp_path):
    result = modelmill("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("run", "data", "ui"):
        assert command in result.stdout
    assert "--epochs" in modelmill("run", "--help", cwd=tmp_path).stdout


@pytest.mark.slow
def test_bootstrap_matches_the_committed_data_version(clone):
    result = modelmill("data", "bootstrap", cwd=clone)
    assert result.returncode == 0, result.stderr
    committed = (REPO / "data.dvc").read_text().split("md5: ")[1].split()[0]
    assert f"data version {committed}" in result.stdout
    assert (
        subprocess.run(
            ["git", "status", "--porcelain", "data.dvc"], cwd=clone, capture_output=True, text=True
        ).stdout
        == ""
    )
    status = modelmill("data", "status", cwd=clone)
    assert "up to date" in status.stdout, status.stdout + status.stderr


@pytest.mark.slow
def test_run_prints_the_summary(clone):
    result = modelmill("run", "--epochs", "1", cwd=clone)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "data version" in out and "macro_f1" in out
    assert "digits-classifier version 1: promoted to champion" in out
    assert "make ui" in out
    assert (clone / "mlflow" / "mlflow.db").exists()
    # one line per stage, no library chatter; the full logs in the file named at the end
    for stage in ("sync-data", "validate", "split", "train", "evaluate", "gate", "register", "summary"):
        assert f"✓ {stage} " in out, out
    shown = out + result.stderr
    for chatter in (
        "INFO |",
        "Warning",
        "warnings.warn",
        "Task run",
        "system metrics",
        "Successfully registered",
    ):
        assert chatter not in shown, shown
    log = Path(result.stderr.split("full log: ")[1].split()[0])
    assert log.is_relative_to(clone / ".modelmill" / "logs")
    text = log.read_text()
    assert "Finished in state Completed" in text and "epoch 1/1" in text


@pytest.mark.slow
def test_verbose_run_prints_the_logs_live(clone):
    result = modelmill("run", "--epochs", "1", "-v", cwd=clone)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Finished in state Completed" in result.stdout + result.stderr


def test_project_dir_holds_the_state_not_the_current_folder(tmp_path):
    """-C decides where Prefect's home and the logs are, before anything reads the project."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "params.yaml").write_text("train:\n  epochs: many\n")
    modelmill("run", "-C", str(project), cwd=elsewhere)
    assert (project / ".modelmill" / "prefect").is_dir()
    assert not (elsewhere / ".modelmill").exists()


def test_bad_config_is_one_clear_line(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  epochs: many\n")
    result = modelmill("run", "-C", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'params.yaml'}: train.epochs: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]
