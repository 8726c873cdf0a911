"""The project lock: one writer of data/, data.dvc and the champion alias at a time.

An OS file lock (filelock) in the project's state folder, re-entrant within a process (a
flow that runs another writer flow keeps it), with a holder record naming PID and command.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from modelmill.errors import LockTimeout

LOCK_FILE = "project.lock"
HOLDER_FILE = "project.lock.json"
DEFAULT_TIMEOUT = 600.0

_guard = threading.RLock()
_held: dict[str, tuple[FileLock, int]] = {}


def lock_paths(project_dir: str | Path) -> tuple[Path, Path]:
    state = Path(project_dir).resolve() / ".modelmill"
    return state / LOCK_FILE, state / HOLDER_FILE


def holder(project_dir: str | Path) -> dict[str, Any] | None:
    """The last recorded holder (pid, command, since), or None."""
    try:
        record: dict[str, Any] = json.loads(lock_paths(project_dir)[1].read_text())
    except (OSError, ValueError):
        return None
    return record


def is_held(project_dir: str | Path) -> bool:
    """Whether some process holds the lock now (a non-blocking probe)."""
    path = lock_paths(project_dir)[0]
    key = str(path)
    with _guard:
        if key in _held:
            return True
    if not path.exists():
        return False
    probe = FileLock(path, timeout=0, thread_local=False)
    try:
        probe.acquire(blocking=False)
    except Timeout:
        return True
    probe.release()
    return False


def describe(record: dict[str, Any] | None) -> str:
    if not record:
        return "an unknown process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record.get("since", 0))))
    return f"PID {record.get('pid')} ({record.get('command')}, since {since})"


@contextmanager
def project_lock(project_dir: str | Path, command: str, timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
    """Hold the project lock for the block; re-entrant in this process; LockTimeout names the holder."""
    path, holder_path = lock_paths(project_dir)
    key = str(path)
    with _guard:
        entry = _held.get(key)
        if entry:
            _held[key] = (entry[0], entry[1] + 1)
    if not entry:
        _acquire(path, holder_path, command, timeout)
    try:
        yield
    finally:
        _release(key)


def _acquire(path: Path, holder_path: Path, command: str, timeout: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=timeout, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise LockTimeout(
            f"{path}: project lock held by {describe(holder(path.parent.parent))}; "
            f"gave up after {timeout:g} s (it frees itself when that process ends)"
        ) from None
    record = {"pid": os.getpid(), "command": command, "since": time.time(), "argv": sys.argv[:6]}
    tmp = holder_path.with_name(f".{holder_path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, holder_path)
    with _guard:
        _held[str(path)] = (lock, 1)


def _release(key: str) -> None:
    with _guard:
        lock, depth = _held[key]
        if depth > 1:
            _held[key] = (lock, depth - 1)
            return
        del _held[key]
    lock.release()
