"""The sqlite MLflow store is created (or migrated) on a copy and renamed into place: a SIGKILL at
any moment of MLflow's non-transactional migration leaves no store or a complete one, never a
half-migrated file that every later open fails on."""

import os
import random
import signal
import subprocess
import sys
import time

from tasks.tracking import ensure_sqlite_store, mlflow_schema_head, sqlite_schema_revision

CREATE = "import sys; from tasks.tracking import ensure_sqlite_store; ensure_sqlite_store(sys.argv[1])"


def test_a_new_store_is_complete_and_a_current_one_is_left_alone(tmp_path):
    db = tmp_path / "mlflow.db"
    ensure_sqlite_store(f"sqlite:///{db}")
    assert sqlite_schema_revision(db) == mlflow_schema_head()
    stamp = db.stat().st_mtime_ns
    ensure_sqlite_store(f"sqlite:///{db}")
    assert db.stat().st_mtime_ns == stamp  # nothing rewritten


def test_killed_while_creating_the_schema_the_next_open_completes(tmp_path):
    rng, outcomes = random.Random(7), []
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CREATE, f"sqlite:///{tmp_path / 'timed.db'}"], check=True)
    full = time.monotonic() - start
    assert done.returncode == 0
    for trial in range(4):
        db = tmp_path / f"killed-{trial}.db"
        proc = subprocess.Popen([sys.executable, "-c", CREATE, f"sqlite:///{db}"], start_new_session=True)
        time.sleep(rng.uniform(0.3, 1.0) * full)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        left = sqlite_schema_revision(db)
        outcomes.append(left)
        assert left in (None, mlflow_schema_head())  # no store, or a complete one: never in between
        ensure_sqlite_store(f"sqlite:///{db}")
        assert sqlite_schema_revision(db) == mlflow_schema_head()
    assert None in outcomes, outcomes  # at least one kill landed before the rename
