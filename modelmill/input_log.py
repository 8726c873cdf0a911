"""Inputs the service scored, kept for serving-time drift (`modelmill drift --to FOLDER`): rotating
Parquet files written by one background thread, each file atomically, their count bounded."""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from modelmill.atomic import atomic_write_bytes

log = logging.getLogger("modelmill.serve")
TIME, VERSION = "served_at", "model_version"  # beside the schema's feature columns
PREFIX = "inputs-"
_TICK = object()  # the flush timer ran out with nothing new
Batch = tuple[float, str, pd.DataFrame]


@dataclass(frozen=True)
class InputLogLimits:
    rows_per_file: int = 10_000  # a file is written once this many rows wait (or flush_seconds pass)
    max_files: int = 100  # the oldest files beyond this are removed
    flush_seconds: float = 10.0
    queued_batches: int = 1_000  # batches waiting for the writer; beyond this new ones are dropped


class InputLog:
    """`offer` never blocks and never raises: a request is not slowed or failed by its logging."""

    def __init__(self, folder: str | Path, limits: InputLogLimits = InputLogLimits()):
        self.folder, self.limits = Path(folder), limits
        self.dropped = self.written = self.failures = 0
        self._queue: queue.Queue[Batch | None] = queue.Queue(limits.queued_batches)
        self._thread = threading.Thread(target=self._run, name="input-log", daemon=True)

    def start(self) -> InputLog:
        """Start the writer (a folder that cannot be made shows as failed writes, not here)."""
        self._thread.start()
        return self

    def offer(self, frame: pd.DataFrame, version: str) -> None:
        """Queue the raw inputs of one scored request (the schema's feature columns)."""
        try:
            self._queue.put_nowait((time.time(), version, frame))
        except queue.Full:
            self.dropped += len(frame)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending and stop the writer."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        pending: list[pd.DataFrame] = []
        last = time.monotonic()
        while True:
            try:
                item: Batch | None | object = self._queue.get(
                    timeout=max(0.0, self.limits.flush_seconds - (time.monotonic() - last))
                )
            except queue.Empty:
                item = _TICK
            if isinstance(item, tuple):
                at, version, frame = item
                pending.append(frame.assign(**{TIME: pd.Timestamp(at, unit="s", tz="UTC"), VERSION: version}))
            due = time.monotonic() - last >= self.limits.flush_seconds
            if item is None or due or sum(map(len, pending)) >= self.limits.rows_per_file:
                self._flush(pending)
                pending, last = [], time.monotonic()
            if item is None:
                return

    def _flush(self, pending: list[pd.DataFrame]) -> None:
        if not pending:
            return
        try:
            frame = pd.concat(pending, ignore_index=True)
            for start in range(0, len(frame), self.limits.rows_per_file):
                self._write(frame.iloc[start : start + self.limits.rows_per_file])
            self._rotate()
        except Exception as exc:  # noqa: BLE001 - a full disk must not stop the service
            self.failures += 1
            log.warning("input log: %d rows not written to %s: %s", sum(map(len, pending)), self.folder, exc)

    def _write(self, frame: pd.DataFrame) -> None:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        name = f"{PREFIX}{time.time_ns():020d}-{os.getpid()}.parquet"  # sorts by time; one writer per process
        atomic_write_bytes(self.folder / name, buffer.getvalue())
        self.written += len(frame)

    def _rotate(self) -> None:
        files = sorted(self.folder.glob(f"{PREFIX}*.parquet"))
        for old in files[: max(0, len(files) - self.limits.max_files)]:
            old.unlink(missing_ok=True)
