"""What every task of a flow run shares: the project folder, the settings, the MLflow run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelmill.config import Settings
from tasks.tracking import Tracker


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


def git_commit(project_dir: str | Path) -> str:
    """The commit of the code (with `-dirty` when the work tree has changes), or `unknown`."""
    import subprocess

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=project_dir, capture_output=True, text=True)

    head = git("rev-parse", "HEAD")
    if head.returncode:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def open_run(project_dir: str, settings: Settings, run_name: str, tags: dict[str, str]) -> RunContext:
    """Create the flow's MLflow run (params = the resolved configuration) and a work folder."""
    import tempfile

    tracker = Tracker.start(settings, project_dir, run_name, tags)
    tracker.log_params(settings.flat())
    state = Path(project_dir, ".modelmill", "work")
    state.mkdir(parents=True, exist_ok=True)
    work_dir = tempfile.mkdtemp(prefix=f"{run_name}-", dir=state)
    from tasks.reconcile import write_work_owner

    write_work_owner(work_dir)
    return RunContext(project_dir, settings, tracker.run_id, work_dir)


def close_run(ctx: RunContext, status: str) -> None:
    import shutil

    from tasks.splits import forget

    ctx.tracker().finish(status)
    shutil.rmtree(ctx.work_dir, ignore_errors=True)
    forget()
