"""`modelmill doctor`: data, registry, runs, work folders and the lock checked; each problem with its fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelmill import journal
from modelmill.config import Settings
from modelmill.lock import describe, holder, is_held


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"ok    {self.what}" if self.ok else f"FAIL  {self.what}\n      fix: {self.fix}"


def check_data(project_dir: Path, settings: Settings) -> list[Finding]:
    from modelmill.data import missing_files
    from tasks.data import data_version, dvc_status, pointer_file, remote_description

    pointer, data_dir = pointer_file(project_dir, settings), project_dir / settings.data.dir
    if not pointer.exists():
        return [Finding(False, f"{pointer.name}: no DVC pointer", "modelmill data bootstrap")]
    version = data_version(project_dir, settings)
    out = [Finding(True, f"{pointer.name} records data version {version}")]
    missing = missing_files(data_dir)
    if missing:
        out.append(Finding(False, f"{data_dir}: missing {', '.join(missing)}", "dvc pull (or modelmill run)"))
    elif dvc_status(project_dir, settings):
        out.append(
            Finding(False, f"{data_dir} differs from {version}", "modelmill run (records it) or dvc checkout")
        )
    else:
        out.append(Finding(True, f"{data_dir} matches {version}"))
    cache = project_dir / ".dvc" / "cache" / "files" / "md5" / version[:2] / version[2:]
    out.append(
        Finding(True, f"DVC cache holds {version}")
        if cache.exists()
        else Finding(False, f"DVC cache lacks {version}", "dvc pull")
    )
    out.append(_remote_check(project_dir, settings, remote_description(project_dir, settings)))
    return out


def _remote_check(project_dir: Path, settings: Settings, remote: str) -> Finding:
    from tasks.data import _repo, pointer_file

    try:
        with _repo(project_dir) as repo:
            status = repo.status(
                targets=[str(pointer_file(project_dir, settings))],
                cloud=True,
                remote=settings.data.dvc_remote,
            )
    except Exception as exc:  # noqa: BLE001 - an unreachable or unset remote is a finding
        return Finding(
            False, f"DVC remote {remote}: {' '.join(str(exc).split())[:200]}", "check `dvc remote list`"
        )
    if status:
        return Finding(
            False, f"DVC remote {remote} lacks part of the data version", "dvc push (or modelmill run)"
        )
    return Finding(True, f"DVC remote {remote} holds the data version")


def check_writes(project_dir: Path) -> list[Finding]:
    pending = journal.pending(project_dir)
    out = [
        Finding(
            False, f"interrupted {e.op} (PID {e.pid}, from {e.version_before})", "modelmill run (finishes it)"
        )
        for e in pending
    ]
    out = out or [Finding(True, "no interrupted data writes (journal empty)")]
    if is_held(project_dir):
        out.append(
            Finding(True, f"project lock held by {describe(holder(project_dir))} (a writer is running)")
        )
    else:
        out.append(Finding(True, "project lock free"))
    return out


def check_registry(project_dir: Path, settings: Settings) -> list[Finding]:
    from tasks.aliases import CHAMPION, PENDING, PROMOTION, alias_version
    from tasks.reconcile import champion_needing_compression, orphan_work_dirs, stale_runs
    from tasks.tracking import connect

    client, experiment = connect(settings, project_dir)
    name, out = settings.registry.model_name, []
    champion = alias_version(client, name, CHAMPION)
    out.append(
        Finding(True, f"{name}@champion is version {champion.version} ({champion.status})")
        if champion is not None and champion.status == "READY"
        else Finding(False, f"{name}@champion: none or not READY", "modelmill run")
    )
    for v in client.search_model_versions(f"name = '{name}' and tags.{PROMOTION} = '{PENDING}'"):
        out.append(Finding(False, f"half-done promotion of {name} version {v.version}", "modelmill run"))
    pending = champion_needing_compression(client, settings)
    if pending:
        out.append(
            Finding(False, f"compression of {name} version {pending} pending or failed", "modelmill run")
        )
    stale = stale_runs(client, experiment)
    out.append(
        Finding(
            False,
            f"{len(stale)} MLflow runs RUNNING with a dead process",
            "modelmill run (marks them KILLED)",
        )
        if stale
        else Finding(True, "no stale RUNNING runs")
    )
    orphans = orphan_work_dirs(project_dir)
    out.append(
        Finding(
            False, f"{len(orphans)} orphan work folders in .modelmill/work", "modelmill run (sweeps them)"
        )
        if orphans
        else Finding(True, "no orphan work folders")
    )
    return out


def diagnose(project_dir: str | Path, settings: Settings) -> list[Finding]:
    root = Path(project_dir).resolve()
    return check_data(root, settings) + check_writes(root) + check_registry(root, settings)
