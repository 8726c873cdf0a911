"""The alias follower: polls NAME@alias, and on a move downloads the new version into its own
folder, verifies its manifest, loads, warms up and smoke-checks it, then swaps it in atomically.

A request takes `follower.current` once and uses that model to the end, so requests in flight
finish on the old one. A version that fails any check is never served: the old one stays, the
failure is logged and passed to `on_reject` (alerts), and that version is not retried.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelmill.errors import ModelmillError, ServingError
from modelmill.scoring import STORED_ONNX, Scorer, scorer_of, smoke_check
from tasks.aliases import alias_target
from tasks.modelstore import EXAMPLE_OUTPUT_TAG, load_verified

log = logging.getLogger("modelmill.serve")
INPUT_EXAMPLE = "input_example.json"  # written by MLflow beside MLmodel (covered by the manifest)
WARMUP_ROUNDS = 3
ONNX_PARITY_TAG = "onnx_max_abs_diff"  # tasks/compress.py: |onnxruntime - torch| on the test split


@dataclass(frozen=True)
class Served:
    """The model answering requests now (immutable: swapped whole, never changed in place)."""

    name: str
    version: str
    scorer: Scorer
    folder: Path
    since: float


class ChampionFollower:
    """Keeps `current` on the verified version behind name@alias (None until one loads)."""

    def __init__(
        self,
        client: Any,
        name: str,
        alias: str,
        cache_dir: Path,
        poll_seconds: float = 2.0,
        max_batch: int = 10_000,
        on_reject: Callable[[str, str], None] | None = None,
        export_onnx: bool = True,
    ):
        self.client, self.name, self.alias = client, name, alias
        self.cache_dir, self.poll_seconds, self.max_batch = Path(cache_dir), poll_seconds, max_batch
        self.on_reject, self.export_onnx = on_reject, export_onnx
        self.current: Served | None = None
        self.rejected: dict[str, str] = {}  # version -> why (never retried)
        self.swaps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> bool:
        """One look at the alias; True when a new version was swapped in."""
        try:
            target = alias_target(self.client, self.name, self.alias)
        except Exception as exc:  # noqa: BLE001 - the registry unreachable: keep serving, retry
            log.warning("polling %s@%s failed: %s", self.name, self.alias, exc)
            return False
        current = self.current.version if self.current else None
        if target is None or target == current or target in self.rejected:
            return False
        try:
            served = self.prepare(target)
        except (ModelmillError, OSError, ValueError, KeyError, RuntimeError) as exc:  # torch: RuntimeError
            self.reject(target, str(exc))
            return False
        self.current = served  # the swap: one reference assignment
        self.swaps += 1
        gc.freeze()  # what is loaded now is long-lived: out of the collector's way (no gen-2 pauses)
        log.info("serving %s v%s through %s (was v%s)", self.name, target, served.scorer.runtime, current)
        return True

    def prepare(self, version: str) -> Served:
        """Download into a fresh per-version folder, verify, load, smoke-check and warm up."""
        where = f"{self.name} v{version}"
        root = self.cache_dir / self.name
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=root))
        try:
            loaded = load_verified(self.client, self.name, version, into=staging)
            scorer = scorer_of(loaded, self.max_batch, export_onnx=self.export_onnx)
            example = read_example(staging, where)
            expected, tolerance = self.example_output(version, scorer.runtime)
            smoke_check(scorer, example, expected, where, tolerance)
            for _ in range(WARMUP_ROUNDS):
                scorer.logits(np.ascontiguousarray(example[:1], dtype=scorer.input_dtype))
            folder = root / f"v{version}-{loaded.manifest.digest[:12]}"
            if folder.exists():  # the same verified bytes are already there: keep that copy
                shutil.rmtree(staging)
            else:
                staging.rename(folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Served(self.name, str(version), scorer, folder, time.time())

    def example_output(self, version: str, runtime: str) -> tuple[np.ndarray | None, float]:
        """The logits recorded at registration (by torch) and how close this runtime must come: 1e-4,
        or for a stored model.onnx the ONNX parity measured when the variant was exported, with a margin."""
        tags = self.client.get_model_version(self.name, version).tags
        tag, tolerance = tags.get(EXAMPLE_OUTPUT_TAG), 1e-4
        if runtime == STORED_ONNX and ONNX_PARITY_TAG in tags:
            tolerance = max(tolerance, 1.5 * float(tags[ONNX_PARITY_TAG]) + 1e-4)
        return (None if tag is None else np.asarray(json.loads(tag), dtype=np.float64)), tolerance

    def reject(self, version: str, why: str) -> None:
        self.rejected[version] = why
        kept = f"v{self.current.version}" if self.current else "nothing"
        log.error("refused %s v%s, still serving %s: %s", self.name, version, kept, why)
        if self.on_reject is not None:
            try:
                self.on_reject(version, why)
            except Exception as exc:  # noqa: BLE001 - an alert that fails must not stop serving
                log.warning("alert for %s v%s failed: %s", self.name, version, exc)

    def start(self) -> None:
        """Load the current version now (blocking), then follow the alias in a daemon thread."""
        self.poll()
        self._thread = threading.Thread(target=self._follow, name="alias-follower", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.poll()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def read_example(folder: Path, where: str) -> np.ndarray:
    """The stored input example of an MLflow model folder ({"inputs": ...} or a bare array)."""
    path = folder / INPUT_EXAMPLE
    if not path.is_file():
        raise ServingError(f"{where}: smoke check: no {INPUT_EXAMPLE} stored with the model")
    raw = json.loads(path.read_text())
    if isinstance(raw, dict):
        raw = raw.get("inputs", raw.get("data"))
    try:
        return np.asarray(raw, dtype=np.float32)
    except (ValueError, TypeError):
        raise ServingError(f"{where}: smoke check: {INPUT_EXAMPLE} is not an array of numbers") from None
