"""Skip-if-unchanged: the run fingerprint (data version + resolved config + code) and the skipped run.

The expensive part of the retrain is a Prefect task whose cache key is this fingerprint, so
an unchanged nightly run gets the last successful run's result back from Prefect's cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from modelmill.config import Settings
from tasks.context import RunContext
from tasks.report import ui_link

CODE_PACKAGES = ("modelmill", "tasks", "flows")
# settings that change how a run is operated, not what it trains
OPERATIONAL_SECTIONS = {"ops"}


def code_version() -> str:
    """sha256 of the Python sources of the packages a run executes (robust to uncommitted edits)."""
    import importlib

    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        root = Path(next(iter(importlib.import_module(package).__path__)))
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_fingerprint(project_dir: str, settings: Settings, data_version: str, code: str) -> str:
    """What decides a run's outcome: project, data version, resolved configuration, code."""
    payload = {
        "project": str(Path(project_dir).resolve()),
        "data_version": data_version,
        "config": settings.model_dump(mode="json", exclude=OPERATIONAL_SECTIONS),
        "code": code,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def fingerprint_cache_key(context, parameters: dict) -> str:
    """Prefect cache_key_fn: the task's `fingerprint` argument is the whole key."""
    return f"retrain-{parameters['fingerprint']}"


@task(name="record-skip", cache_policy=NO_CACHE)
def record_skip(ctx: RunContext, reused: dict, fingerprint: str) -> dict:
    """Tag this (short) MLflow run skipped=unchanged, pointing at the run whose result it reuses."""
    reused_run = reused["mlflow_run_id"]
    tracker = ctx.tracker()
    reused_url = ui_link(ctx, f"#/experiments/{reused['experiment_id']}/runs/{reused_run}")
    tracker.set_tags(
        {
            "skipped": "unchanged",
            "reused_run_id": reused_run,
            "fingerprint": fingerprint,
            "model_version": reused["registry"]["version"],
            "mlflow.note.content": f"Nothing changed since run {reused_run}: reused it ({reused_url}).",
        }
    )
    markdown = (
        f"# retrain: skipped (unchanged)\n\nData version `{reused['data_version']}`, configuration "
        f"and code equal those of MLflow run `{reused_run}` ([open]({reused_url})); its model "
        f"{reused['registry']['name']} version {reused['registry']['version']} stands.\n"
        f"Run with `force` (CLI: `--force`) to retrain anyway.\n"
    )
    create_markdown_artifact(
        markdown=markdown, key="retrain-summary", description="modelmill retrain summary"
    )
    get_run_logger().info("unchanged since MLflow run %s: skipped retraining", reused_run)
    return {
        **reused,
        "skipped": "unchanged",
        "reused_run_id": reused_run,
        "mlflow_run_id": ctx.run_id,
        "markdown": markdown,
    }
