"""Fault injection: SIGKILL of the real CLI (its whole process group) at random moments, then a plain
rerun must converge: same data/, labels and data version as an uninterrupted run, one champion,
no duplicate model versions, no half-done promotion, no RUNNING runs, no pending journal entry.

MODELMILL_FAULT_KILLS (default 3) kills per command; MODELMILL_FAULT_SEED picks the moments.
The figures (tried, recovered, lost) are printed and written to fault-injection.json.
"""

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from modelmill import journal
from tests.support import labelstudio_sim as sim
from tests.support.labelstudio_sim import tree_digest

CLI = str(Path(sys.executable).with_name("modelmill"))
MODEL = "digits-classifier"
KILLS = int(os.environ.get("MODELMILL_FAULT_KILLS", "3"))
RNG = random.Random(int(os.environ.get("MODELMILL_FAULT_SEED", "13")))

pytestmark = pytest.mark.heavy


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING", "DVC_"))}
    return {**env, "COLUMNS": "120"}


def invoke(project: Path, args: list[str], kill_after: float | None = None) -> tuple[int, float, str]:
    """Run the CLI in its own process group; SIGKILL the group after kill_after seconds (if still running)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [CLI, *args, "-C", str(project)], cwd=project, env=cli_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=kill_after if kill_after is not None else 900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its ephemeral Prefect server
        out, _ = proc.communicate()
    with_children_gone(proc.pid)
    return proc.returncode, time.monotonic() - start, out


def with_children_gone(pgid: int) -> None:
    """Whatever the CLI left in its process group (an ephemeral server) goes with it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def state(project: Path) -> dict:
    """What must converge: data/ bytes, data version, champion sanity, registry and run hygiene."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{project / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    out = {
        "data": tree_digest(project / "data"),
        "data_version": yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"],
        "journal": [e.op for e in journal.pending(project)],
    }
    if not (project / "mlflow" / "mlflow.db").exists():
        return out
    versions = client.search_model_versions(f"name = '{MODEL}'")
    run_ids = [v.tags.get("mlflow_run_id") for v in versions]
    experiments = [e.experiment_id for e in client.search_experiments()]
    out.update(
        duplicate_versions=len(run_ids) - len(set(run_ids)),
        pending_promotions=sum(v.tags.get("promotion") == "pending" for v in versions),
        running_runs=len(client.search_runs(experiments, "attributes.status = 'RUNNING'")),
    )
    if versions:
        champion = client.get_model_version_by_alias(MODEL, "champion")
        out["champion_data_version"] = champion.tags.get("data_version")
    return out


def export(folder: Path) -> Path:
    tasks = [
        sim.task(
            i + 1, f"digits-{i:04d}", [sim.annotation(10 * i + 1, 1, "3"), sim.annotation(10 * i + 2, 2, "3")]
        )
        for i in range(40)
    ]
    return sim.write_json(folder / "export.json", tasks)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_a_plain_rerun_converges(project, tmp_path):
    label_export = export(tmp_path)
    commands = {"import-labels": ["import-labels", str(label_export)], "run": ["run", "--epochs", "1"]}
    reference, durations = tmp_path / "reference", {}
    shutil.copytree(project, reference, symlinks=True)
    for name, args in commands.items():  # uninterrupted, one after the other
        rc, durations[name], out = invoke(reference, args)
        assert rc == 0, out[-3000:]
    expected = state(reference)
    figures = {"tried": 0, "killed": 0, "recovered": 0, "lost": 0, "per_command": {}}
    for name, args in commands.items():
        for trial in range(KILLS):
            target = tmp_path / f"{name}-{trial}"
            shutil.copytree(project, target, symlinks=True)
            if name == "run":  # the run starts from the imported data, like the reference's
                invoke(target, commands["import-labels"])
            moment = RNG.uniform(0.15, 1.0) * durations[name]
            rc, _, _ = invoke(target, args, kill_after=moment)
            figures["tried"] += 1
            figures["killed"] += rc == -signal.SIGKILL
            rerun, _, out = invoke(target, args)
            got = state(target)
            ok = rerun == 0 and _converged(got, expected, with_model=name == "run")
            figures["recovered" if ok else "lost"] += 1
            print(
                f"fault injection: {name} killed at {moment:.1f}s -> {'recovered' if ok else 'LOST'}",
                flush=True,
            )
            figures["per_command"].setdefault(name, []).append(
                {"kill_at_s": round(moment, 1), "killed": rc == -signal.SIGKILL, "ok": ok}
                | ({} if ok else {"state": got, "tail": out[-1500:]})
            )
    Path(tmp_path, "fault-injection.json").write_text(json.dumps(figures, indent=2, default=str))
    print("fault injection:", json.dumps(figures, default=str))
    assert figures["lost"] == 0, json.dumps(figures, indent=2, default=str)


def _converged(got: dict, expected: dict, with_model: bool) -> bool:
    same = all(got.get(k) == expected[k] for k in ("data", "data_version"))
    clean = got["journal"] == [] and not got.get("duplicate_versions") and not got.get("pending_promotions")
    no_running = not got.get("running_runs")
    champion = not with_model or got.get("champion_data_version") == expected.get("champion_data_version")
    return same and clean and no_running and champion
