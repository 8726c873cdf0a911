"""Start-of-run reconciliation: what killed runs left behind is cleaned up or finished.

MLflow runs left RUNNING by a dead process are marked KILLED (tag `killed_reason`); work
folders of dead processes are swept; half-done promotions are finished (tasks/aliases.py).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from prefect import get_run_logger

from modelmill.config import Settings
from modelmill.processes import identity, owner_alive
from tasks.aliases import CHAMPION, alias_version, finish_pending_promotions
from tasks.progress import stage
from tasks.tracking import connect

WORK_OWNER = "owner.json"
UNOWNED_AGE_S = 24 * 3600
COMPRESSION = "compression"  # champion version tag: pending | done | failed (a later run retries)


def stale_runs(client, experiment_id: str) -> list:
    """RUNNING runs whose owning process (tags modelmill.host/pid/pid_start) is gone."""
    running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=5000)
    return [run for run in running if owner_alive(run.data.tags) is False]


def mark_killed(client, runs: list) -> list[str]:
    for run in runs:
        tags = run.data.tags
        client.set_tag(
            run.info.run_id,
            "killed_reason",
            f"process {tags.get('modelmill.pid')} on {tags.get('modelmill.host')} ended while RUNNING",
        )
        client.set_terminated(run.info.run_id, status="KILLED")
    return [run.info.run_id for run in runs]


def write_work_owner(work_dir: str | Path) -> None:
    """Name this process as the work folder's owner (swept once it is dead)."""
    me = identity(os.getpid())
    Path(work_dir, WORK_OWNER).write_text(
        json.dumps({"pid": os.getpid(), "start": me["start"] if me else None})
    )


def orphan_work_dirs(project_dir: str | Path) -> list[Path]:
    """Work folders whose owner process is dead (or unowned and older than a day)."""
    root = Path(project_dir, ".modelmill", "work")
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            owner = json.loads((folder / WORK_OWNER).read_text())
        except (OSError, ValueError):
            if time.time() - folder.stat().st_mtime > UNOWNED_AGE_S:
                out.append(folder)
            continue
        now = identity(int(owner["pid"]))
        if now is None or now["start"] != owner.get("start"):
            out.append(folder)
    return out


def champion_needing_compression(client, settings: Settings) -> str | None:
    """The champion version whose compression is pending or failed (a later run retries only that)."""
    if not settings.compress.enabled:
        return None
    champion = alias_version(client, settings.registry.model_name, CHAMPION)
    if champion is None or champion.tags.get(COMPRESSION) not in ("pending", "failed"):
        return None
    return str(champion.version)


@stage("reconcile", retries=1, retry_delay_seconds=2)
def reconcile(project_dir: str, settings: Settings, actor: str) -> dict:
    """Clean up after killed runs; finish their half-done promotions. Run with the project lock held."""
    logger = get_run_logger()
    client, experiment_id = connect(settings, project_dir)
    killed = mark_killed(client, stale_runs(client, experiment_id))
    swept = orphan_work_dirs(project_dir)
    for folder in swept:
        shutil.rmtree(folder, ignore_errors=True)
    promoted = finish_pending_promotions(client, settings.registry.model_name, actor)
    if killed or swept or promoted:
        logger.warning(
            "reconciled: %d stale runs marked KILLED, %d orphan work folders removed, promotions done: %s",
            len(killed),
            len(swept),
            ", ".join(promoted) or "none",
        )
    return {
        "killed_runs": killed,
        "swept": [str(f) for f in swept],
        "promotions_finished": promoted,
        "compress_version": champion_needing_compression(client, settings),
    }
