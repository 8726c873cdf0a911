"""Skip-if-unchanged: the run fingerprint and the first stage that finds a run to reuse.

The fingerprint covers what decides a retrain's outcome: the data version, the settings that
change training, evaluation, the gate and compression, the code, and the versions of the
libraries that change numbers. The `find-reusable-run` stage looks it up among the finished,
retrained runs of the tracking store (shared by every process and worker of the project), so an
unchanged nightly run records a short run pointing at that one and trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from modelmill.config import Settings
from tasks.context import RunContext
from tasks.progress import stage
from tasks.report import SUMMARY_FILE, ui_link

CODE_PACKAGES = ("modelmill", "tasks", "flows")
# libraries whose version changes the numbers a run produces
LIBRARIES = ("torch", "numpy", "scikit-learn", "pandas", "pyarrow", "safetensors", "onnx", "onnxruntime")
# settings that change how a run is operated or reported, not what it trains
NOT_OUTCOME: dict[str, set[str] | None] = {
    "ops": None,
    "tracking": None,
    "labels": None,  # label import changes the data version, which is covered
    "tune": None,  # a tuned run trains with the tuned values, which are covered
    "data": {"push", "git_commit", "dvc_remote"},
    "compress": {"latency_repeats", "threads"},
    "serve": None,  # how the champion is served, not how it is trained
    "drift": None,  # the drift check reports on the data; it does not change what is trained
}
RETRAINED_TAG = "retrained"  # set on a retrain run whose whole pipeline finished


def code_version(packages: tuple[str, ...] = CODE_PACKAGES) -> str:
    """sha256 of the Python sources of the packages a run executes (robust to uncommitted edits)."""
    import importlib

    digest = hashlib.sha256()
    for package in packages:
        root = Path(next(iter(importlib.import_module(package).__path__)))
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def outcome_settings(settings: Settings) -> dict[str, Any]:
    """The configuration minus what does not change a run's outcome (NOT_OUTCOME)."""
    tree = settings.model_dump(mode="json")
    for section, keys in NOT_OUTCOME.items():
        if keys is None:
            tree.pop(section, None)
        else:
            for key in keys:
                tree.get(section, {}).pop(key, None)
    return tree


def run_fingerprint(settings: Settings, data_version: str, code: str) -> str:
    """Same data version, outcome settings, code and libraries -> same fingerprint (on any
    machine or clone: the project's path is not part of it)."""
    payload = {
        "data_version": data_version,
        "config": outcome_settings(settings),
        "code": code,
        "libraries": library_versions(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


@stage("find-reusable-run")
def find_reusable_run(ctx: RunContext, fingerprint: str) -> dict[str, Any] | None:
    """The summary of the last finished, retrained run with this fingerprint, or None."""
    tracker = ctx.tracker()
    experiment_id = tracker.client.get_run(ctx.run_id).info.experiment_id
    runs = tracker.client.search_runs(
        [experiment_id],
        filter_string=f"tags.fingerprint = '{fingerprint}' and tags.{RETRAINED_TAG} = 'true' "
        "and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        get_run_logger().info("no finished run with fingerprint %s: retraining", fingerprint)
        return None
    with tempfile.TemporaryDirectory(prefix="modelmill-reuse-") as tmp:
        path = tracker.client.download_artifacts(runs[0].info.run_id, SUMMARY_FILE, tmp)
        summary: dict[str, Any] = json.loads(Path(path).read_text())
    return summary


@stage("record-skip", task_run_name="reuse run {reused[mlflow_run_id]}")
def record_skip(ctx: RunContext, reused: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """Tag this (short) MLflow run skipped=unchanged, pointing at the run whose result it reuses."""
    reused_run = reused["mlflow_run_id"]
    tracker = ctx.tracker()
    reused_url = ui_link(ctx, f"#/experiments/{reused['experiment_id']}/runs/{reused_run}")
    registry = reused["registry"]
    tracker.set_tags(
        {
            "skipped": "unchanged",
            "reused_run_id": reused_run,
            "model_version": registry["version"],
            "mlflow.note.content": f"Nothing changed since run {reused_run}: reused it ({reused_url}).",
        }
    )
    markdown = (
        f"# retrain: skipped (unchanged), reused run {reused_run}\n\nData version "
        f"`{reused['data_version']}`, configuration, code and libraries equal those of MLflow run "
        f"`{reused_run}` ([open]({reused_url})); its model {registry['name']} version "
        f"{registry['version']} stands.\nRun with `force` (CLI: `--force`) to retrain anyway.\n"
    )
    create_markdown_artifact(markdown=markdown, key="retrain-summary", description="retrain skipped")
    get_run_logger().info("unchanged since MLflow run %s: skipped retraining", reused_run)
    return {
        **reused,
        "skipped": "unchanged",
        "reused_run_id": reused_run,
        "mlflow_run_id": ctx.run_id,
        "markdown": markdown,
    }
