"""Data tasks: DVC sync, data version, new versions (add + push) of the data folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from modelmill import journal
from modelmill.config import Settings
from modelmill.data import SOURCES, bootstrap, missing_files
from modelmill.errors import DatasetError, DataSyncError
from modelmill.journal import folder_md5
from tasks.progress import stage


def pointer_file(project_dir: str | Path, settings: Settings) -> Path:
    return Path(project_dir, f"{settings.data.dir}.dvc")


def data_version(project_dir: str | Path, settings: Settings) -> str:
    """The md5 that the .dvc pointer records for the data folder (`<md5>.dir`)."""
    pointer = pointer_file(project_dir, settings)
    if not pointer.exists():
        raise DatasetError(f"{pointer}: no DVC pointer; run `modelmill data bootstrap`")
    outs = (yaml.safe_load(pointer.read_text()) or {}).get("outs") or [{}]
    md5 = outs[0].get("md5")
    if not md5:
        raise DatasetError(f"{pointer}: no md5 recorded for the data folder")
    return md5


def _repo(project_dir: str | Path):
    from dvc.repo import Repo

    repo = Repo(str(project_dir))
    repo.scm_context.quiet = True  # no "git add data.dvc" hints in the logs
    return repo


def dvc_status(project_dir: str | Path, settings: Settings) -> dict:
    with _repo(project_dir) as repo:
        return repo.status(targets=[str(pointer_file(project_dir, settings))])


def version_data(project_dir: str | Path, settings: Settings, message: str) -> str:
    """`dvc add` the data folder (a no-op when unchanged); optionally git-commit the pointer."""
    with _repo(project_dir) as repo:
        repo.add(str(Path(project_dir, settings.data.dir).resolve()))
    version = data_version(project_dir, settings)
    if settings.data.git_commit:
        pointer = pointer_file(project_dir, settings).name
        subprocess.run(["git", "add", pointer, ".gitignore"], cwd=project_dir, check=True)
        if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=project_dir).returncode:
            subprocess.run(
                ["git", "commit", "-q", "-m", f"{message} (data {version})"], cwd=project_dir, check=True
            )
    return version


@task(name="push-data", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def push_data(project_dir: str, settings: Settings) -> int:
    """Push the data version to the DVC remote (I/O: retried). Returns the number of files sent."""
    if not settings.data.push:
        return 0
    with _repo(project_dir) as repo:
        if not repo.config.get("core", {}).get("remote") and not settings.data.dvc_remote:
            get_run_logger().warning("no DVC remote configured: data version not pushed")
            return 0
        return repo.push(targets=[str(pointer_file(project_dir, settings))], remote=settings.data.dvc_remote)


@stage("sync-data", retries=1, retry_delay_seconds=2)
def sync_data(project_dir: str, settings: Settings) -> str:
    """Make the data folder match a DVC version and return that version.

    Finishes an interrupted write first (journal). Missing data is pulled from the remote; the
    built-in source is bootstrapped only when there is no pointer or the pointer records that
    source's own bytes. Any other pull failure fails here, before anything is written. Data
    changed by hand is recorded as a new version with `dvc add`.
    """
    from tasks.recovery import finish_pending

    logger = get_run_logger()
    finish_pending(project_dir, settings)
    data_dir, pointer = Path(project_dir, settings.data.dir), pointer_file(project_dir, settings)
    if pointer.exists() and not _complete(data_dir):
        pull_data(project_dir, settings)
    elif not _complete(data_dir):
        if settings.data.source not in SOURCES:
            raise DatasetError(f"{data_dir}: no data and no way to bootstrap '{settings.data.source}'")
        bootstrap_data(project_dir, settings)
    before = data_version(project_dir, settings) if pointer.exists() else None
    if not pointer.exists() or dvc_status(project_dir, settings):
        version = version_data(project_dir, settings, "retrain: data folder changed")
        if before and version != before:
            logger.warning("data/ differed from %s: recorded as new data version %s", before, version)
    version = data_version(project_dir, settings)
    push_data(project_dir, settings)
    logger.info("data version %s", version)
    return version


def pull_data(project_dir: str, settings: Settings) -> None:
    """`dvc pull` the recorded version; bootstrap only when it is the built-in source's own bytes."""
    logger = get_run_logger()
    data_dir, version = Path(project_dir, settings.data.dir), data_version(project_dir, settings)
    logger.info("data folder incomplete: dvc pull of %s", version)
    try:
        with _repo(project_dir) as repo:
            repo.pull(targets=[str(pointer_file(project_dir, settings))], remote=settings.data.dvc_remote)
        problem = f"missing {', '.join(missing_files(data_dir))} after the pull"
    except Exception as exc:  # noqa: BLE001 - any DVC failure: decide below, never invent data
        problem = " ".join(str(exc).split())[:300] or type(exc).__name__
    if _complete(data_dir):
        return
    if builtin_version(settings.data.source) == version:
        logger.warning(
            "dvc pull failed (%s); %s is the built-in %s: bootstrapping it",
            problem,
            version,
            settings.data.source,
        )
        bootstrap_data(project_dir, settings)
        return
    raise DataSyncError(
        f"{pointer_file(project_dir, settings)}: cannot pull data version {version} from DVC remote "
        f"{remote_description(project_dir, settings)}: {problem}; nothing was written "
        "(fix the remote, or `dvc checkout` a version the local cache holds)"
    )


def builtin_version(source: str) -> str | None:
    """The data version (`<md5>.dir`) a bootstrap of the built-in source writes, or None."""
    import tempfile

    if source not in SOURCES:
        return None
    with tempfile.TemporaryDirectory(prefix="modelmill-builtin-") as tmp:
        return folder_md5(bootstrap(Path(tmp, "data"), source))


def bootstrap_data(project_dir: str | Path, settings: Settings, source: str | None = None) -> str:
    """Write a built-in source into data/ and `dvc add` it, under a journal entry (kill-safe)."""
    source = source or settings.data.source
    pointer = pointer_file(project_dir, settings)
    before = data_version(project_dir, settings) if pointer.exists() else None
    journal.begin(project_dir, "bootstrap", before, source=source)
    bootstrap(Path(project_dir, settings.data.dir), source)
    version = version_data(project_dir, settings, f"data bootstrap ({source})")
    journal.end(project_dir, "bootstrap")
    return version


def remote_description(project_dir: str | Path, settings: Settings) -> str:
    """`'name' (url)` of the remote a pull or push uses."""
    with _repo(project_dir) as repo:
        name = settings.data.dvc_remote or repo.config.get("core", {}).get("remote")
        if not name:
            return "(none configured)"
        url = repo.config.get("remote", {}).get(name, {}).get("url", "?")
    return f"'{name}' ({url})"


def _complete(data_dir: Path) -> bool:
    return not missing_files(data_dir)
