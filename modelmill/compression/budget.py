"""The compress stage's time budget: compress.max_train_ratio x the training stage's seconds, spent
on the cheapest and likeliest variants first; what it cannot afford is skipped and said so."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class TimeBudget:
    """Seconds the stage may take (None: unbounded), counted on time.perf_counter from creation
    (deadlines are readings of that clock, as the training loop and the latency timing take them).

    `epoch_seconds` is one training epoch of the model being compressed (the training stage's
    seconds over its epochs): what a fine-tuning or distillation epoch is planned at."""

    seconds: float | None
    epoch_seconds: float | None = None
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = time.perf_counter()

    @classmethod
    def from_training(
        cls,
        ratio: float | None,
        train_seconds: float | None,
        epochs_run: int | None = None,
    ) -> TimeBudget:
        """ratio x train_seconds; unbounded when either is None (no ratio set, or the run that
        trained the model did not record its time) or the ratio is 0."""
        epoch = train_seconds / epochs_run if train_seconds and epochs_run else None
        if not ratio or train_seconds is None:
            return cls(None, epoch)
        return cls(ratio * train_seconds, epoch)

    def keeping(self, seconds: float) -> TimeBudget:
        """The same budget, started at the same time, less `seconds` kept for work after it
        (never less than half of it: the variants come first)."""
        if self.seconds is None:
            return self
        kept = TimeBudget(max(self.seconds - seconds, self.seconds / 2), self.epoch_seconds)
        kept.started = self.started
        return kept

    @property
    def bounded(self) -> bool:
        return self.seconds is not None

    def used(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return math.inf if self.seconds is None else self.seconds - self.used()

    def affords(self, seconds: float) -> bool:
        return self.left() >= seconds

    def deadline(self, keep: float = 0.0) -> float | None:
        """The clock reading by which work must stop to leave `keep` seconds (None: unbounded)."""
        return None if self.seconds is None else self.started + self.seconds - keep

    def reason(self) -> str:
        """Why a variant was not built: what the budget had spent when it was its turn."""
        return f"skipped: budget ({self.used():.1f} s of {self.seconds or 0:.1f} s used)"

    def epochs(self, seconds: float, at_most: int) -> int:
        """Epochs (at most `at_most`) of epoch_seconds that fit in `seconds`: all of them when
        unbounded or the epoch time is unknown."""
        if self.seconds is None or not self.epoch_seconds:
            return at_most
        return max(0, min(at_most, int(seconds // self.epoch_seconds)))

    def items(self, seconds: float, epochs: int, total: int) -> int:
        """Items of a training split of `total` (the one epoch_seconds was measured on) of which
        `epochs` epochs fit in `seconds`: all of them when unbounded or the epoch time is unknown."""
        if self.seconds is None or not self.epoch_seconds:
            return total
        return max(0, min(total, int(total * seconds / (max(epochs, 1) * self.epoch_seconds))))

    def summary(self) -> str:
        if self.seconds is None:
            return f"no time budget ({self.used():.1f} s used)"
        return f"time budget {self.seconds:.1f} s ({self.used():.1f} s used)"
