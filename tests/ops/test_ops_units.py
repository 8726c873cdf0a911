"""Fast checks of the operations pieces that need no server: fingerprint, prefect.yaml, stack record."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from flows import stack as local_stack
from flows.env import project_env
from modelmill.config import Settings
from tasks.reuse import CODE_PACKAGES, code_version, run_fingerprint

REPO = Path(__file__).resolve().parents[2]


def test_fingerprint_covers_outcome_settings_data_code_and_libraries_only(monkeypatch):
    from tasks import reuse

    settings = Settings()
    base = run_fingerprint(settings, "abc.dir", "code1")
    assert base != run_fingerprint(settings, "abd.dir", "code1")
    assert base != run_fingerprint(settings, "abc.dir", "code2")
    for changed in ({"train.seed": 7}, {"model.width": 16}, {"split.salt": "x"}, {"gate.tolerance": 0.1},
                    {"compress.budget_points": 2.0}):  # fmt: skip
        assert base != run_fingerprint(settings.override(changed), "abc.dir", "code1"), changed
    not_outcome = settings.override({
        "ops.timezone": "Europe/Paris", "ops.alert_webhook_url": "http://x", "labels.export_count": 7,
        "compress.latency_repeats": 3, "compress.threads": 2, "tune.trials": 3, "data.push": False,
    })  # fmt: skip
    assert base == run_fingerprint(not_outcome, "abc.dir", "code1")
    versions = reuse.library_versions()
    monkeypatch.setattr(reuse, "library_versions", lambda: {**versions, "torch": "0.0.1"})
    assert base != run_fingerprint(settings, "abc.dir", "code1")  # another torch, other numbers


def _code_version_of(tree: Path) -> str:
    """code_version() as a run from `tree` computes it (a fresh process importing that tree)."""
    probe = "from tasks.reuse import code_version; print(code_version())"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tree, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_code_version_follows_the_source_files(tmp_path):
    """An edit to any source file of a package a run executes changes it; other files do not."""
    for name in CODE_PACKAGES:
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    base = _code_version_of(tmp_path)
    assert len(base) == 16 and int(base, 16) >= 0
    assert base == code_version()  # the copy is this checkout's code
    split = tmp_path / "modelmill" / "split.py"
    original = split.read_text()
    split.write_text(original + "\n# an edit\n")
    edited = _code_version_of(tmp_path)
    (tmp_path / "modelmill" / "notes.txt").write_text("not code\n")
    assert _code_version_of(tmp_path) == edited != base
    split.write_text(original)
    (tmp_path / "flows" / "extra_stage.py").write_text("STAGE = 1\n")  # a new module counts too
    assert _code_version_of(tmp_path) not in (base, edited)


ASKED_AT_RUN = {"promote": {"params": {"version": "3"}}}


def test_prefect_yaml_deployments_load_as_flows_on_the_stacks_pool():
    """Each entrypoint is a Prefect flow, on the pool `modelmill up` creates, with a valid schedule."""
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import Flow, load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    for deployment in spec["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        flow = load_flow_from_entrypoint(f"{REPO / path}:{name}")
        assert isinstance(flow, Flow), deployment["name"]
        # a manual deployment may ask for a value when it is run (promote: which version)
        asked = ASKED_AT_RUN.get(deployment["name"], {})
        flow.validate_parameters({**(deployment.get("parameters") or {}), **asked})
        assert deployment["work_pool"]["name"] == local_stack.WORK_POOL
        for schedule in deployment.get("schedules") or []:
            CronSchedule(cron=schedule["cron"], timezone="UTC")  # raises on a malformed cron
    # the pull step reads the root `modelmill up` exports
    [pull] = spec["pull"]
    directory = pull["prefect.deployments.steps.set_working_directory"]["directory"]
    assert project_env(REPO)[directory.strip("{} $")] == str(REPO)


def test_deployable_skips_missing_entrypoints(tmp_path):
    (tmp_path / "prefect.yaml").write_text((REPO / "prefect.yaml").read_text())
    assert local_stack.deployable(tmp_path) == []
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "retrain.py").write_text("")
    assert local_stack.deployable(tmp_path) == ["nightly-retrain", "retrain"]


def test_down_without_a_stack_stops_nothing(tmp_path):
    assert local_stack.down(tmp_path) == []
    assert local_stack.load_stack(tmp_path) is None


def test_down_knows_its_process_by_pid_and_start_time_not_by_command_line(tmp_path):
    """A server may retitle itself (its command line changes): still ours. A reused PID starts
    later: not ours, and `down` leaves it alone."""
    from modelmill.processes import identity

    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        recorded = identity(proc.pid)
        assert recorded is not None
        stack = local_stack.Stack(root=str(tmp_path), prefect_port=1, mlflow_port=2, worker_port=3)
        stack.pids["mlflow"] = proc.pid
        stack.identity["mlflow"] = {**recorded, "cmdline": ["retitled", "server"]}
        assert local_stack.still_ours(stack, "mlflow")
        stack.identity["mlflow"] = {**recorded, "start": recorded["start"] + 1}
        assert not local_stack.still_ours(stack, "mlflow")
    finally:
        proc.kill()
        proc.wait()
