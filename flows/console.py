"""What a CLI run prints: one line per stage, progress bars, the result; the full logs of Prefect,
MLflow and the libraries go to a per-run log file (and to the Prefect run as always), and live to
the terminal only with `-v`.

`quiet_environment` must run before Prefect is imported (it sets the level of Prefect's console
handler through Prefect's own `PREFECT_LOGGING_*` overrides); `shown_run` wraps the command.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.env import STATE_DIR

LOG_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"
# loggers that do not propagate to the root logger and print on their own
OWN_HANDLERS = ("mlflow", "py.warnings", "prefect.extra", "prefect._internal", "alembic", "dvc")
# ... of which these only reach the terminal on -v: py.warnings; DVC's warnings (a missing cache
# file on a fresh clone, before the built-in source is rebuilt), whose errors modelmill reports itself
SILENT = ("py.warnings", "dvc")


def verbose_requested(argv: list[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return any(arg in ("-v", "--verbose") for arg in argv)


def quiet_environment(verbose: bool) -> None:
    """Before Prefect is imported: its console handler shows nothing unless verbose (our stage
    lines and errors are printed by the CLI itself)."""
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


def log_file_for(project_dir: str | Path, command: str) -> Path:
    folder = Path(project_dir, STATE_DIR, "logs").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{command}-{os.getpid()}.log"


@contextmanager
def shown_run(project_dir: str | Path, command: str, verbose: bool) -> Iterator[Path]:
    """Around a CLI command that runs a flow: stage lines + bars on the terminal, full logs in a
    file whose path is printed at the end (also when the command fails)."""
    from rich.console import Console

    from tasks import progress

    log_path = log_file_for(project_dir, command)
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in OWN_HANDLERS)]
    logging.captureWarnings(True)  # library warnings go to the log, not the terminal
    quiet = [] if verbose else _quiet_own_handlers()
    for logger in loggers:
        logger.addHandler(handler)
    progress.enable(Console(stderr=False))
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("default")  # each shown once, in the log file
            yield log_path
    finally:
        progress.disable()
        for logger in loggers:
            logger.removeHandler(handler)
        for stream_handler, level in quiet:
            stream_handler.setLevel(level)
        handler.close()
        print(f"full log: {log_path}", file=sys.stderr)


def _quiet_own_handlers() -> list[tuple[logging.Handler, int]]:
    """Terminal handlers of loggers that print on their own (MLflow's) raised to WARNING."""
    changed = []
    for name in OWN_HANDLERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                changed.append((handler, handler.level))
                handler.setLevel(logging.CRITICAL if name in SILENT else logging.WARNING)
    return changed
