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
    # one annotator key for every copy: each project would otherwise make its own (random) key, and
    # the pseudonyms in annotations.parquet (so the data version) would differ between copies
    return {**env, "COLUMNS": "120", "MODELMILL_ANNOTATOR_KEY": "a5" * 32}


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
    from modelmill.tuning import schema_lock

    uri = f"sqlite:///{project / 'mlflow' / 'mlflow.db'}"
    if (project / "mlflow" / "mlflow.db").exists():
        with schema_lock(uri):  # as modelmill opens it: one schema migration of a sqlite file at a time
            MlflowClient(uri, registry_uri=uri).search_registered_models(max_results=1)
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


TUNE = {
    "trials": 3,
    "epochs": 2,
    "sampler_startup_trials": 2,
    "pruner": "none",
    "heartbeat_interval": 1,
    "grace_period": 2,
    "space": {"train.learning_rate": {"type": "float", "low": 1.0e-3, "high": 5.0e-2, "log": True}},
}


def study_state(project: Path) -> dict:
    import optuna

    storage = f"sqlite:///{project / 'optuna' / 'optuna.db'}"
    if not (project / "optuna" / "optuna.db").exists():
        return {"finished_trials": 0, "running_trials": 0}
    trials = [t for s in optuna.get_all_study_summaries(storage)
              for t in optuna.load_study(study_name=s.study_name, storage=storage).trials]  # fmt: skip
    states = [t.state.name for t in trials]
    return {
        "finished_trials": sum(s in ("COMPLETE", "PRUNED") for s in states),
        "running_trials": states.count("RUNNING"),
    }


def compressed_state(project: Path) -> dict:
    """The compressed champion's source: the champion it was made from."""
    from tests.support.mlflow_store import client_for

    client = client_for(project)
    name = f"{MODEL}-compressed"
    versions = client.search_model_versions(f"name = '{name}'")
    run_ids = [v.tags.get("mlflow_run_id") or v.run_id for v in versions]
    try:
        alias = client.get_model_version_by_alias(name, "champion")
    except Exception:  # noqa: BLE001 - no compressed champion (yet)
        alias = None
    return {
        "compressed_champion_of": alias.tags.get("source_version") if alias else None,
        "duplicate_compressed": len(run_ids) - len(set(run_ids)),
    }


def prepare(kind: str, project: Path, tmp_path: Path) -> list[str]:
    """The command under test, and the project made ready for it."""
    if kind == "data import":
        table = tmp_path / "table.csv"
        rows = "".join(f"k{i},{i % 9}.25,{'abc'[i % 3]},{'yes' if i % 4 else 'no'}\n" for i in range(3000))
        table.write_text("id,x,colour,target\n" + rows)
        return ["data", "import", str(table), "--target", "target", "--id", "id"]
    params = yaml.safe_load((project / "params.yaml").read_text())
    if kind == "tune":
        params["tune"] = {**params.get("tune", {}), **TUNE}
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return ["tune"]
    params["compress"]["enabled"] = False  # the champion first, then `modelmill compress` under test
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rc, _, out = invoke(project, ["run", "--epochs", "1"])
    assert rc == 0, out[-3000:]
    return ["compress"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["data import", "tune", "compress"])
def test_sigkill_of_data_import_tune_and_compress_then_a_rerun_converges(kind, project, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(project, base, symlinks=True)
    args = prepare(kind, base, tmp_path)
    reference = tmp_path / "reference"
    shutil.copytree(base, reference, symlinks=True)
    rc, duration, out = invoke(reference, args)
    assert rc == 0, out[-3000:]

    def converge_on(target: Path) -> dict:
        got = {**state(target), **study_state(target)}
        return got | (compressed_state(target) if kind == "compress" else {})

    expected = converge_on(reference)
    assert expected["journal"] == [] and not expected.get("running_runs")
    figures = {"tried": 0, "killed": 0, "recovered": 0, "lost": 0, "runs": []}
    for trial in range(KILLS):
        target = tmp_path / f"killed-{trial}"
        shutil.copytree(base, target, symlinks=True)
        moment = RNG.uniform(0.15, 1.0) * duration
        rc, _, _ = invoke(target, args, kill_after=moment)
        figures["tried"] += 1
        figures["killed"] += rc == -signal.SIGKILL
        rerun, _, out = invoke(target, args)
        got = converge_on(target)
        keys = ["data", "data_version", "journal", "running_runs", "finished_trials", "running_trials"]
        keys += ["compressed_champion_of", "duplicate_compressed"] if kind == "compress" else []
        ok = rerun == 0 and all(got.get(k) == expected.get(k) for k in keys)
        figures["recovered" if ok else "lost"] += 1
        figures["runs"].append({"kill_at_s": round(moment, 1), "ok": ok} | ({} if ok else {"got": got,
                               "expected": expected, "tail": out[-1500:]}))  # fmt: skip
        verdict = "recovered" if ok else "LOST"
        print(f"fault injection: {kind} killed at {moment:.1f}s -> {verdict}", flush=True)
    print(f"fault injection ({kind}):", json.dumps(figures, default=str))
    assert figures["lost"] == 0, json.dumps(figures, indent=2, default=str)
