"""Registry: one version per MLflow run, compare-and-set champion, half-done promotions finished,
killed runs marked KILLED, a failed compression retried alone (real Prefect, MLflow, DVC)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.retrain import RetrainParams, retrain
from modelmill.config import load_settings
from modelmill.errors import CompressionError, RegistryConflict
from modelmill.gate import GateDecision
from tasks.aliases import CHAMPION, alias_target, finish_pending_promotions, move_alias
from tests.support.mlflow_store import client_for

pytestmark = pytest.mark.usefixtures("prefect_harness")
MODEL = "digits-classifier"


@pytest.fixture(scope="module")
def shared(project_template, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("registry") / "project"
    shutil.copytree(project_template, target, symlinks=True)
    return target


@pytest.fixture(scope="module")
def first_run(shared):
    return retrain(RetrainParams(project_dir=str(shared), epochs=1))


def versions(client) -> list[str]:
    return [str(n) for n in sorted(int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))]


def test_a_retried_register_finds_the_version_of_its_run(first_run, shared, tmp_path):
    from tasks.context import RunContext
    from tasks.registry import register

    client = client_for(shared)
    before = versions(client)
    ctx = RunContext(
        str(shared), load_settings(shared / "params.yaml"), first_run["mlflow_run_id"], str(tmp_path)
    )
    champion = alias_target(client, MODEL, CHAMPION)
    decision = GateDecision(True, "retry", "macro_f1", 0.9, 0.9, champion_version=champion)
    again = register(ctx, "unused: the version exists", decision, None, None)
    assert again.version == first_run["registry"]["version"] and versions(client) == before


def test_alias_moves_are_compare_and_set(first_run, shared):
    client = client_for(shared)
    champion = alias_target(client, MODEL, CHAMPION)
    other = _pending_version(client, shared, expected_from=champion)
    client.set_model_version_tag(MODEL, other, "promotion", "test")
    assert move_alias(client, MODEL, CHAMPION, champion, "99", "test", "tests") == champion  # already there
    with pytest.raises(RegistryConflict, match=f"{MODEL}@champion is version {champion}, not 99"):
        move_alias(client, MODEL, CHAMPION, other, "99", "test", "tests")
    assert alias_target(client, MODEL, CHAMPION) == champion
    assert move_alias(client, MODEL, CHAMPION, other, champion, "test", "tests") == champion
    assert alias_target(client, MODEL, CHAMPION) == other


def _pending_version(client, shared: Path, expected_from: str | None) -> str:
    """A version as a run killed between registering and moving the alias leaves it."""
    source = client.get_model_version(MODEL, first_version(client))
    tags = {"promotion": "pending", "promotion_from": expected_from or "none", "mlflow_run_id": "killed-run"}
    return str(client.create_model_version(MODEL, source.source, tags=tags).version)


def first_version(client) -> str:
    return versions(client)[0]


def test_the_next_run_finishes_a_half_done_promotion_or_abandons_a_stale_one(first_run, shared):
    client = client_for(shared)
    champion = alias_target(client, MODEL, CHAMPION)
    stale = _pending_version(client, shared, expected_from="no-such-version")
    half_done = _pending_version(client, shared, expected_from=champion)

    assert finish_pending_promotions(client, MODEL, "tests") == [half_done]

    assert alias_target(client, MODEL, CHAMPION) == half_done
    assert client.get_model_version(MODEL, half_done).tags["promotion"] == "done"
    assert client.get_model_version(MODEL, stale).tags["promotion"] == "abandoned"
    assert finish_pending_promotions(client, MODEL, "tests") == []


def test_runs_left_running_by_a_dead_process_are_marked_killed(first_run, shared):
    from tasks.reconcile import mark_killed, stale_runs
    from tasks.tracking import Tracker, connect

    settings = load_settings(shared / "params.yaml")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    tracker = Tracker.start(settings, shared, "killed", {"flow": "retrain"})
    tracker.set_tags({"modelmill.pid": dead.stdout.strip()})  # the process that owned it has exited
    alive = Tracker.start(settings, shared, "alive", {"flow": "retrain"})
    client, experiment = connect(settings, shared)

    assert [r.info.run_id for r in stale_runs(client, experiment)] == [tracker.run_id]
    mark_killed(client, stale_runs(client, experiment))

    run = client.get_run(tracker.run_id)
    assert run.info.status == "KILLED" and "ended while RUNNING" in run.data.tags["killed_reason"]
    assert client.get_run(alive.run_id).info.status == "RUNNING"
    alive.finish()


@pytest.mark.slow
def test_a_failed_compression_keeps_the_promotion_and_only_it_is_retried(
    project_template, tmp_path, monkeypatch
):
    import flows.compress

    project = tmp_path / "project"
    shutil.copytree(project_template, project, symlinks=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["compress"].update(enabled=True, budget_points=10.0, prune=False, distill=False)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    real = flows.compress.compress_registered

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(flows.compress, "compress_registered", disk_full)
    with pytest.raises(CompressionError, match="No space left on device"):
        retrain(RetrainParams(project_dir=str(project), epochs=1))
    client = client_for(project)
    assert versions(client) == ["1"] and alias_target(client, MODEL, CHAMPION) == "1"
    assert client.get_model_version(MODEL, "1").tags["compression"] == "failed"

    monkeypatch.setattr(flows.compress, "compress_registered", real)
    summary = retrain(RetrainParams(project_dir=str(project), epochs=1))

    assert summary["skipped"] == "unchanged", "no retraining, no second promotion"
    assert versions(client) == ["1"] and alias_target(client, MODEL, CHAMPION) == "1"
    assert client.get_model_version(MODEL, "1").tags["compression"] == "done"
    assert alias_target(client, f"{MODEL}-compressed", CHAMPION) == "1"


@pytest.mark.slow
def test_a_champion_split_another_way_is_reported_not_comparable(project):
    first = retrain(RetrainParams(project_dir=str(project), epochs=1))
    client = client_for(project)
    assert (
        client.get_model_version(MODEL, "1").tags["split_definition"] == "salt=modelmill;val=0.15;test=0.15"
    )
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["split"]["salt"] = "reshuffled"
    (project / "other-split.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    second = retrain(RetrainParams(project_dir=str(project), config="other-split.yaml", epochs=1))

    assert first["registry"]["version"] == "1" and second["registry"]["version"] == "2"
    assert (
        "champion v1 was split with salt=modelmill;val=0.15;test=0.15, not salt=reshuffled"
        in (second["gate_reason"])
    )
    assert "not comparable, judged on gate.min_score only" in second["gate_reason"]
