"""The real CLI, as a user runs it, on a fresh clone of this repository."""

import subprocess

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


def test_bad_config_is_one_clear_line(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  epochs: many\n")
    result = modelmill("run", "-C", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'params.yaml'}: train.epochs: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]
