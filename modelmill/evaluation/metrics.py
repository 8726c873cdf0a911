"""Point metrics on the test split: overall and per-class, confusion matrix and its plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class EvaluationReport:
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    classes: list[str]
    n: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def metrics(self, prefix: str = "test_") -> dict[str, float]:
        """Flat metrics for a tracker: overall and per-class F1."""
        out = {
            f"{prefix}{k}": getattr(self, k)
            for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")
        }
        for name, row in self.per_class.items():
            out[f"{prefix}f1_class_{_safe(name)}"] = row["f1"]
        return out

    def score(self, metric: str) -> float:
        return float(getattr(self, metric))


def evaluate_predictions(y_true: ArrayLike, y_pred: ArrayLike, classes: list[str]) -> EvaluationReport:
    """Metrics of predicted class indices against true ones (classes absent from both count 0)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(len(classes)))
    p, r, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    macro = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    per_class = {
        name: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }
    return EvaluationReport(
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_precision=float(macro[0]),
        macro_recall=float(macro[1]),
        macro_f1=float(macro[2]),
        per_class=per_class,
        confusion=confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        classes=list(classes),
        n=int(len(y_true)),
    )


def evaluate_model(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: list[str]
) -> EvaluationReport:
    from modelmill.training import predict_proba

    return evaluate_predictions(y.numpy(), predict_proba(model, x).argmax(1).numpy(), classes)


def plot_confusion_matrix(report: EvaluationReport, path: str | Path, title: str = "") -> Path:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

    cm = np.asarray(report.confusion)
    n = len(report.classes)
    fig = Figure(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n), dpi=110)
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), report.classes, rotation=45, ha="right")
    ax.set_yticks(range(n), report.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"confusion matrix (accuracy {report.accuracy:.3f})")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if cm[i, j] > threshold else "black",
            )
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
