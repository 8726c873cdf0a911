"""serve.log_inputs: the raw inputs /predict scored land in rotating Parquet files, and
`modelmill drift --from champion --to FOLDER` finds a shift in them (and none in real inputs)."""

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.serving.conftest import digits_rows, start_server, stop_server

ROWS = 300


@pytest.fixture(scope="module")
def logging_server(served_project):
    """The shared champion, served with serve.log_inputs on (its own config file)."""
    params = yaml.safe_load((served_project / "params.yaml").read_text())
    params["serve"].update(log_inputs=True, inputs_dir="served-inputs", log_flush_seconds=0.3,
                           log_rows_per_file=100, log_max_files=50)  # fmt: skip
    (served_project / "params-inputs.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    running = start_server(served_project, "--config", "params-inputs.yaml")
    yield running, served_project / "served-inputs"
    stop_server(running)


def served_batch(server, folder: Path, rows: list[list[float]], into: Path) -> Path:
    """POST rows to /predict in requests of 20, wait until all are written, move the files to `into`."""
    for start in range(0, len(rows), 20):
        answer = server.post("/predict", {"inputs": rows[start : start + 20]})
        assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        files = sorted(folder.glob("inputs-*.parquet"))
        if sum(len(pd.read_parquet(f)) for f in files) >= len(rows):
            break
        time.sleep(0.1)
    into.mkdir()
    for f in files:
        shutil.move(f, into / f.name)
    return into


def test_logged_inputs_are_the_raw_rows_with_time_and_version(logging_server, tmp_path):
    server, folder = logging_server
    rows = digits_rows(server_project(folder), 30)
    moved = served_batch(server, folder, rows, tmp_path / "logged")
    frame = pd.concat([pd.read_parquet(f) for f in sorted(moved.glob("*.parquet"))], ignore_index=True)
    version = server.get("/version").json()["version"]
    assert len(frame) == 30 and set(frame["model_version"]) == {version}
    assert np.allclose(frame[[f"px{i}" for i in range(64)]].to_numpy(), np.asarray(rows))
    assert frame["served_at"].is_monotonic_increasing and len(list(moved.glob("*.parquet"))) >= 1


def test_drift_against_the_champion_finds_shifted_inputs_and_not_real_ones(logging_server, tmp_path):
    from flows.drift import drift
    from flows.params import DriftParams

    server, folder = logging_server
    project = server_project(folder)
    real = digits_rows(project, ROWS)
    shifted = [[16.0 - v for v in row] for row in real]  # inverted digits: a different input population
    same_dir = served_batch(server, folder, real, tmp_path / "real")
    moved_dir = served_batch(server, folder, shifted, tmp_path / "shifted")
    same = drift(DriftParams(project_dir=str(project), reference="champion", current=str(same_dir)))
    moved = drift(DriftParams(project_dir=str(project), reference="champion", current=str(moved_dir)))
    assert not same["drifted"], same["markdown"]
    assert moved["drifted"] and "embeddings" in moved["markdown"], moved["markdown"]


def server_project(folder: Path) -> Path:
    return folder.parent
