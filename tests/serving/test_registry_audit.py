"""Audited alias moves on a real registry: the retrain's promotion, `modelmill promote` and
`rollback` through the CLI and the Prefect flow, `registry history`, and `registry verify`
catching an edited record and an alias moved outside modelmill."""

import json
import os
import subprocess
import sys

import pytest

from tasks.aliases import CHAMPION, alias_target
from tasks.audit import history
from tests.serving.conftest import MODEL
from tests.support.mlflow_store import client_for


def cli(project, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    cmd = [sys.executable, "-m", "flows.cli", *args, "-C", str(project)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)


@pytest.fixture(scope="module")
def two_versions(served_project):
    client = client_for(served_project)
    first = alias_target(client, MODEL, CHAMPION)
    mv = client.get_model_version(MODEL, first)
    second = str(client.create_model_version(MODEL, mv.source, mv.run_id, tags=mv.tags).version)
    yield first, second
    client = client_for(served_project)
    if alias_target(client, MODEL, CHAMPION) != first:
        client.set_registered_model_alias(MODEL, CHAMPION, first)


def test_the_retrain_promotion_is_recorded_with_its_gate_figures(served_project, two_versions):
    first, _ = two_versions
    records = [r for r in history(client_for(served_project), MODEL) if r.alias == CHAMPION]
    assert records[0].to_version == first and records[0].from_version is None
    assert records[0].actor.startswith("run ") and records[0].gate["metric"] == "macro_f1"
    assert records[0].data_version and len(records[0].data_version) >= 32


def test_promote_and_rollback_through_the_cli_are_recorded(served_project, two_versions):
    first, second = two_versions
    promoted = cli(served_project, "promote", MODEL, second, "--reason", "canary looked good")
    assert promoted.returncode == 0, promoted.stderr
    assert f"{MODEL}@champion: v{first} -> v{second}" in promoted.stdout
    assert alias_target(client_for(served_project), MODEL, CHAMPION) == second
    back = cli(served_project, "rollback", MODEL)
    assert back.returncode == 0, back.stderr
    assert alias_target(client_for(served_project), MODEL, CHAMPION) == first
    shown = cli(served_project, "registry", "history", MODEL)
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if "champion" in line]
    assert f"v{first} -> v{second}" in lines[-2] and "canary looked good" in lines[-2]
    assert f"v{second} -> v{first}" in lines[-1] and "rollback" in lines[-1] and "by cli " in lines[-1]
    verified = cli(served_project, "registry", "verify", MODEL)
    assert verified.returncode == 0 and "chain intact, aliases match the history" in verified.stdout


def test_rollback_through_the_prefect_flow(served_project, two_versions):
    from flows.params import PromoteParams, RollbackParams
    from flows.promote import promote, rollback

    first, second = two_versions
    moved = promote(PromoteParams(project_dir=str(served_project), version=second, reason="flow promote"))
    assert moved["to_version"] == second
    back = rollback(RollbackParams(project_dir=str(served_project), reason="flow rollback"))
    assert back == {"name": MODEL, "alias": CHAMPION, "from_version": second, "to_version": first,
                    "reason": "flow rollback"}  # fmt: skip
    last = history(client_for(served_project), MODEL)[-1]
    assert last.actor.startswith("flow run ") and last.to_version == first


def test_a_conflicting_rollback_fails_in_one_line(served_project, two_versions):
    first, _ = two_versions
    refused = cli(served_project, "rollback", MODEL, "--to", first)
    assert (
        refused.returncode == 1
        and refused.stderr.strip() == f"error: {MODEL}@champion is already version {first}"
    )


def test_verify_catches_an_out_of_band_alias_move_and_an_edited_record(served_project, two_versions):
    first, second = two_versions
    client = client_for(served_project)
    client.set_registered_model_alias(MODEL, CHAMPION, second)  # as the MLflow UI would
    found = cli(served_project, "registry", "verify", MODEL)
    assert found.returncode == 1
    assert (f"alias champion: the registry says version {second}, the audit history says {first} "
            "(moved outside modelmill)") in found.stderr  # fmt: skip
    client.set_registered_model_alias(MODEL, CHAMPION, first)
    record = history(client, MODEL)[1]
    edited = json.loads(record.to_json()) | {"reason": "rewritten"}
    client.set_registered_model_tag(MODEL, record.tag, json.dumps(edited))
    found = cli(served_project, "registry", "verify", MODEL)
    assert found.returncode == 1
    assert f"record 2 ({record.tag}): its content does not match its hash" in found.stderr
    client.set_registered_model_tag(MODEL, record.tag, record.to_json())
    assert cli(served_project, "registry", "verify", MODEL).returncode == 0
