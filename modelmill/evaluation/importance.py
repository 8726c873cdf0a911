"""Tabular explanations in the user's own columns: Integrated Gradients of the preprocessed features
summed back per original column, and permutation importance of each column (seeded), ranked.

Permutation is hand-written rather than sklearn's `permutation_importance`: that one permutes one
matrix column at a time, and a one-hot categorical or a missing-value indicator spans several
matrix columns of one original column; permuting them apart makes rows no data could produce."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass
class ColumnImportance:
    """Per original column: mean |IG| over the probes, and the accuracy drop when it is permuted."""

    attribution: dict[str, float]
    permutation: dict[str, float]  # mean accuracy drop over the repeats (points of accuracy, 0..1)
    permutation_std: dict[str, float] = field(default_factory=dict)
    repeats: int = 0

    def ranked(self) -> list[str]:
        return sorted(self.permutation, key=lambda c: (-self.permutation[c], -self.attribution[c], c))

    def as_dict(self) -> dict[str, object]:
        return {
            "ranked": self.ranked(),
            "attribution": self.attribution,
            "permutation_accuracy_drop": self.permutation,
            "permutation_accuracy_drop_std": self.permutation_std,
            "permutation_repeats": self.repeats,
        }

    def metrics(self, top: int = 10) -> dict[str, float]:
        return {f"importance_permutation_{c}": self.permutation[c] for c in self.ranked()[:top]}


def attribution_by_column(ig: torch.Tensor, groups: dict[str, list[int]]) -> dict[str, float]:
    """Mean over probes of |sum of the column's feature attributions| (signed parts of a one-hot cancel)."""
    flat = ig.reshape(len(ig), -1)
    return {c: float(flat[:, idx].sum(1).abs().mean()) for c, idx in groups.items()}


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    device = next(model.parameters()).device
    pred = torch.cat([model(x[s : s + 1024].to(device)).argmax(1).cpu() for s in range(0, len(x), 1024)])
    return float((pred == y).float().mean())


def permutation_drop(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    groups: dict[str, list[int]],
    repeats: int = 5,
    seed: int = 42,
) -> tuple[dict[str, float], dict[str, float]]:
    """Accuracy drop per column when its features move together to another row (seeded)."""
    model.eval()
    base, generator = _accuracy(model, x, y), torch.Generator().manual_seed(seed)
    mean, std = {}, {}
    for column, idx in groups.items():
        drops = []
        for _ in range(repeats):
            order = torch.randperm(len(x), generator=generator)
            shuffled = x.clone()
            shuffled[:, idx] = x[order][:, idx]
            drops.append(base - _accuracy(model, shuffled, y))
        mean[column], std[column] = float(np.mean(drops)), float(np.std(drops))
    return mean, std


def column_importance(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ig: torch.Tensor,
    groups: dict[str, list[int]],
    repeats: int = 5,
    seed: int = 42,
) -> ColumnImportance:
    """`groups`: original column -> its feature indices (TabularPreprocessor.feature_groups)."""
    mean, std = permutation_drop(model, x, y, groups, repeats, seed)
    return ColumnImportance(attribution_by_column(ig, groups), mean, std, repeats)


def plot_importance(importance: ColumnImportance, path: str | Path, top: int = 20) -> Path:
    """Ranked horizontal bars: permutation accuracy drop (with its std) beside mean |IG| (PNG)."""
    from matplotlib.figure import Figure

    ranked = importance.ranked()[:top][::-1]
    fig = Figure(figsize=(8.0, 0.35 * len(ranked) + 1.4), dpi=100)
    left, right = fig.subplots(1, 2, sharey=True)
    rows = np.arange(len(ranked))
    drops = [importance.permutation[c] * 100 for c in ranked]
    errors = [importance.permutation_std.get(c, 0.0) * 100 for c in ranked]
    left.barh(rows, drops, xerr=errors, color="tab:blue")
    left.set(yticks=rows, yticklabels=ranked, xlabel="accuracy drop when permuted (points)")
    right.barh(rows, [importance.attribution[c] for c in ranked], color="tab:orange")
    right.set(xlabel="mean |Integrated Gradients|")
    fig.suptitle(f"column importance ({importance.repeats} permutations per column)")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
