"""The budget rule: the smallest (or fastest) variant within the accuracy budget, as a pure function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from modelmill.compression.measure import VariantRow

EPSILON = 1e-9


@dataclass
class Selection:
    chosen: str | None
    budget_points: float
    select_by: str
    reasons: dict[str, str] = field(default_factory=dict)  # variant -> why it was or was not chosen

    def summary(self) -> str:
        head = f"selected `{self.chosen}`" if self.chosen else "no variant fits the budget; nothing selected"
        lines = [f"{head} (budget {self.budget_points:.2f} accuracy points, by {self.select_by})"]
        lines += [f"- {name}: {why}" for name, why in self.reasons.items()]
        return "\n".join(lines)


def select_variant(
    rows: list[VariantRow],
    baseline: str = "float",
    budget_points: float = 1.0,
    select_by: str = "size",
    serving_batch_size: int = 256,
) -> Selection:
    """Among the non-baseline rows whose accuracy drop is within budget and which beat the
    baseline on the criterion, the one with the least size (or latency at the serving batch).
    The drop is measured on the validation split when the rows carry it: choosing on the test
    split would make the test figures reported for the choice optimistic."""
    base = next(r for r in rows if r.name == baseline)
    cost: Callable[[VariantRow], float] = (
        (lambda r: r.size_bytes) if select_by == "size" else (lambda r: r.latency_ms[serving_batch_size])
    )
    unit = "bytes" if select_by == "size" else f"ms at batch {serving_batch_size}"
    selection, fits = Selection(None, budget_points, select_by), []
    split = "validation " if base.val_accuracy is not None else ""
    for row in rows:
        if row.name == baseline:
            continue
        drop = (base.selection_accuracy - row.selection_accuracy) * 100
        if drop > budget_points + EPSILON:
            selection.reasons[row.name] = (
                f"missed the budget: {split}accuracy drop {drop:.2f} > {budget_points:.2f} points"
            )
        elif cost(row) >= cost(base):
            selection.reasons[row.name] = (
                f"within budget but not better than {baseline} ({cost(row):.4g} >= {cost(base):.4g} {unit})"
            )
        else:
            fits.append(row)
            within = f"within budget ({split}drop {drop:.2f} points)"
            selection.reasons[row.name] = f"{within}, {cost(row):.4g} {unit}"
    if fits:
        best = min(fits, key=lambda r: (cost(r), -r.selection_accuracy, r.name))
        selection.chosen = best.name
        selection.reasons[best.name] += " -> selected"
    return selection
