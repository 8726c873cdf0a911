"""Same data version, configuration and code: two `modelmill run --force`, each its own process,
give bit-identical weights and the same metrics (issue: the model was initialised before the
seed was set), and each run says what its determinism rests on."""

import os
import subprocess
import sys
from pathlib import Path

from tests.support.mlflow_store import client_for

CLI = str(Path(sys.executable).with_name("modelmill"))


def run_forced(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    done = subprocess.run(
        [CLI, "run", "--force"], cwd=project, capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_two_forced_runs_give_bit_identical_weights_and_metrics(project):
    run_forced(project)
    run_forced(project)
    client = client_for(project)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "tags.flow = 'retrain' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"],
    )
    assert len(runs) == 2
    first, second = (r.data for r in runs)
    assert len(first.tags["weights_sha256"]) == 64
    assert first.tags["weights_sha256"] == second.tags["weights_sha256"]
    assert first.tags["deterministic"] == second.tags["deterministic"] == "true: cpu, 2 threads"
    history = [client.get_metric_history(r.info.run_id, "train_loss") for r in runs]
    assert [m.value for m in history[0]] == [m.value for m in history[1]] and history[0]
    for key in ("test_accuracy", "test_macro_f1", "val_loss"):
        assert first.metrics[key] == second.metrics[key], key
