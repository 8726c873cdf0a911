"""Start-up of a one-shot CLI run, done side by side: Prefect's ephemeral API server boots in
its own process while this process imports what the flow's tasks will import anyway.

Without it a `modelmill run` with no PREFECT_API_URL first imports everything (single-threaded,
one core idle) and only then waits for the server (the other core busy, this one idle).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Imported lazily by the retrain tasks (validate, tracking, registry, DVC sync, plots).
TASK_IMPORTS = (
    "flows.retrain",
    "great_expectations",
    "great_expectations.expectations",
    "mlflow",
    "mlflow.pytorch",
    "mlflow.data",
    "dvc.repo",
    "matplotlib.figure",
    "sklearn.metrics",
)


@contextmanager
def one_shot_run() -> Iterator[None]:
    """Around a flow called from the CLI: the API server and the imports side by side; with
    an ephemeral API, no flow-run heartbeats (see `without_heartbeats`)."""
    with imports_without_gc():
        api_ready = start_ephemeral_api()
        for name in TASK_IMPORTS:
            importlib.import_module(name)
    if api_ready is None:  # a server at PREFECT_API_URL
        yield
        return
    api_ready()
    with without_heartbeats():
        yield


def start_ephemeral_api() -> Callable[[], None] | None:
    """Start Prefect's ephemeral API server in the background when the run would use one
    (no PREFECT_API_URL); returns a function that waits until it answers, or None."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    # the very server the flow's client starts (a per-process singleton, started once); no
    # public API starts Prefect's ephemeral server ahead of the first client, so this one is used
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()

    def boot() -> None:
        with contextlib.suppress(Exception):  # the flow's own client starts it again and reports
            server.start()

    thread = threading.Thread(target=boot, name="prefect-ephemeral-api", daemon=True)
    thread.start()
    return thread.join


@contextmanager
def without_heartbeats() -> Iterator[None]:
    """Flow-run heartbeats let a server that outlives the run mark it crashed when they stop.
    The ephemeral server stops with this process, so they serve nothing there, and the engine
    waits up to a second for the heartbeat thread when the flow ends."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@contextmanager
def imports_without_gc() -> Iterator[None]:
    """Import with Python's cyclic garbage collector paused, then freeze what was imported.

    A collection traverses every live object, and importing the stack creates about 630k of
    them (module dicts, classes, pydantic schemas) and almost no garbage: collecting during
    the imports cost 1.5 s of 5 s here. Frozen objects (the permanent generation) are skipped
    by every later collection, during the run and at interpreter exit.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
