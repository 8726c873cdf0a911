"""One writer at a time: the project lock, plus a Prefect global concurrency slot through a server.

Every flow and command that writes data/, data.dvc or the champion alias runs inside `writer`.
Against a Prefect server (the stack) the run first waits for a slot of the global concurrency
limit `modelmill-writer` (limit 1, created by `modelmill up`), so queued writers show as waiting
in the dashboard instead of timing out on the file lock. Both are re-entrant in one process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from modelmill.config import Settings
from modelmill.lock import project_lock

WRITER_LIMIT = "modelmill-writer"

_depth = threading.local()


def through_server() -> bool:
    """Whether flow runs report to a Prefect server (not the per-process ephemeral API)."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL"))


@contextmanager
def writer(project_dir: str | Path, settings: Settings, command: str) -> Iterator[None]:
    """Hold the writer slot (server) and the project lock for the block."""
    outer = getattr(_depth, "n", 0) == 0
    _depth.n = getattr(_depth, "n", 0) + 1
    try:
        with ExitStack() as stack:
            if outer and through_server():
                from prefect.concurrency.sync import concurrency

                stack.enter_context(
                    concurrency(WRITER_LIMIT, occupy=1, timeout_seconds=settings.data.lock_timeout or None)
                )
            stack.enter_context(project_lock(project_dir, command, settings.data.lock_timeout))
            yield
    finally:
        _depth.n -= 1
