"""Intent journal for multi-file writes of the data folder: begun before the first byte, ended last.

A pending entry means the data folder may be half-written: the next writer completes the
operation it names (or restores the recorded version) before it reads or versions data/.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

JOURNAL_DIR = "journal"


@dataclass(frozen=True)
class Entry:
    """One operation in flight: what it is, the data version it started from, what it needs to finish."""

    op: str
    version_before: str | None
    details: dict[str, Any] = field(default_factory=dict)
    pid: int = 0
    started: float = 0.0


def journal_dir(project_dir: str | Path) -> Path:
    return Path(project_dir).resolve() / ".modelmill" / JOURNAL_DIR


def _path(project_dir: str | Path, op: str) -> Path:
    return journal_dir(project_dir) / f"{op}.json"


def begin(project_dir: str | Path, op: str, version_before: str | None, **details: Any) -> Entry:
    """Record the intent durably (fsync'ed file, then rename) before the operation writes anything."""
    entry = Entry(op, version_before, details, os.getpid(), time.time())
    target = _path(project_dir, op)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    with tmp.open("w") as out:
        json.dump(asdict(entry), out, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    return entry


def end(project_dir: str | Path, op: str) -> None:
    """The operation is complete (data/ written, versioned and pushed): drop its entry."""
    path = _path(project_dir, op)
    if path.exists():
        path.unlink()
        _fsync_dir(path.parent)


def pending(project_dir: str | Path) -> list[Entry]:
    """Entries left by operations that did not finish, oldest first."""
    folder = journal_dir(project_dir)
    if not folder.is_dir():
        return []
    entries = []
    for path in sorted(folder.glob("*.json")):
        try:
            raw = json.loads(path.read_text())
            entries.append(Entry(**raw))
        except (OSError, ValueError, TypeError):
            entries.append(Entry(path.stem, None, {"unreadable": str(path)}))
    return sorted(entries, key=lambda e: e.started)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def folder_md5(folder: str | Path) -> str:
    """The md5 DVC 3 records for a folder (`<md5>.dir`), computed without DVC (same algorithm)."""
    import hashlib

    root = Path(folder)
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.md5()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        entries.append({"md5": digest.hexdigest(), "relpath": path.relative_to(root).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    listing = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(listing).hexdigest() + ".dir"
