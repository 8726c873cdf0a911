"""What a person running the CLI sees: one line per stage as it finishes and a progress bar over
long loops (epochs, compression variants). Off unless the CLI turns it on (`enable`): under a
worker or a test the same tasks print nothing and log to Prefect as usual.

Stages report through Prefect's own task state hooks (`stage(...)` adds them to a task)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

_console: Any = None  # a rich Console while the CLI shows progress
_lock = threading.Lock()


def enable(console: Any) -> None:
    global _console
    _console = console


def disable() -> None:
    global _console
    _console = None


def _seconds(task_run: Any) -> float:
    total = getattr(task_run, "total_run_time", None)
    return total.total_seconds() if total is not None else 0.0


def stage_done(tsk: Any, task_run: Any, state: Any) -> None:
    if _console is not None:
        with _lock:
            _console.print(f"[green]✓[/] {tsk.name:<24} {_seconds(task_run):6.1f}s")


def stage_failed(tsk: Any, task_run: Any, state: Any) -> None:
    if _console is not None:
        with _lock:
            message = (state.message or "").splitlines()[0][:200] if state.message else "failed"
            _console.print(f"[red]✗[/] {tsk.name:<24} {message}")


def stage(name: str, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`@task` of a pipeline stage: named, not cached by inputs unless told, reporting progress."""
    options.setdefault("cache_policy", NO_CACHE)
    return task(name=name, on_completion=[stage_done], on_failure=[stage_failed], **options)


class Bar:
    """A rich progress bar while the CLI shows progress; a no-op otherwise."""

    def __init__(self, description: str, total: int, unit: str):
        self.description, self.total, self.unit = description, total, unit
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Bar:
        if _console is not None and _console.is_terminal:  # a log or a pipe gets the stage lines only
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn(self.unit + "s"), TimeElapsedColumn(), TextColumn("{task.fields[note]}"),
                console=_console, transient=True,
            )  # fmt: skip
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, note="")
        return self

    def advance(self, note: str = "", total: int | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, note=note, total=total or self.total)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def bar(description: str, total: int, unit: str = "step") -> Bar:
    return Bar(description, total, unit)
