"""What every task of a flow run shares: the project folder, the settings, the MLflow run and a
work folder; and the lineage (code, data, orchestration) recorded on runs and model versions."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from modelmill.config import Settings
from tasks.tracking import Tracker, tracked_run

WORK_DIR = Path(".modelmill", "work")


@dataclass(frozen=True)
class RunContext:
    project_dir: str
    settings: Settings
    run_id: str
    work_dir: str

    @property
    def data_dir(self) -> Path:
        return Path(self.project_dir, self.settings.data.dir)

    def tracker(self) -> Tracker:
        return Tracker.attach(self.settings, self.project_dir, self.run_id)


class Lineage(BaseModel):
    """Where a run's result comes from: code, data and the Prefect flow run."""

    git_commit: str
    code_version: str
    prefect_flow_run_id: str
    prefect_flow_run_name: str
    data_version: str = ""

    def tags(self, **extra: str) -> dict[str, str]:
        return {**{k: v for k, v in self.model_dump().items() if v}, **extra}


def lineage_of_this_run(project_dir: str, data_version: str = "") -> Lineage:
    """The lineage of the Prefect flow run this is called from."""
    from prefect import runtime

    from tasks.reuse import code_version

    return Lineage(
        git_commit=git_commit(project_dir),
        code_version=code_version(),
        prefect_flow_run_id=str(runtime.flow_run.id),
        prefect_flow_run_name=str(runtime.flow_run.name),
        data_version=data_version,
    )


def git_commit(project_dir: str | Path) -> str:
    """The commit of the code (with `-dirty` when the work tree has changes), or `unknown`."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=project_dir, capture_output=True, text=True, check=False)

    head = git("rev-parse", "HEAD")
    if head.returncode:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


@contextlib.contextmanager
def flow_run(
    project_dir: str, settings: Settings, run_name: str, tags: dict[str, str], log_config: bool = True
) -> Iterator[RunContext]:
    """The MLflow run of a flow run (params = the resolved configuration) and its work folder,
    both closed on exit whatever happens (FINISHED / FAILED / KILLED; folder removed)."""
    state = Path(project_dir, WORK_DIR)
    state.mkdir(parents=True, exist_ok=True)
    from tasks.reconcile import write_work_owner

    with tracked_run(settings, project_dir, run_name, tags) as tracker:
        if log_config:
            tracker.log_params(settings.flat())
        work_dir = tempfile.mkdtemp(prefix=f"{run_name}-", dir=state)
        write_work_owner(work_dir)  # swept by a later run if this process dies
        try:
            yield RunContext(project_dir, settings, tracker.run_id, work_dir)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
