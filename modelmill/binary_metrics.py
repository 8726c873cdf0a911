"""Binary classification: ROC AUC, PR AUC and a decision threshold chosen on validation data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
)


@dataclass(frozen=True)
class BinaryMetrics:
    """Scores of P(class 1) against the truth; accuracy and F1 at the decision threshold."""

    positive_class: str
    roc_auc: float
    pr_auc: float
    threshold: float
    accuracy_at_threshold: float
    f1_at_threshold: float

    def metrics(self, prefix: str = "test_") -> dict[str, float]:
        return {f"{prefix}{k}": v for k, v in asdict(self).items() if k != "positive_class"}


def choose_threshold(y_true: np.ndarray, p_positive: np.ndarray) -> float:
    """The threshold on P(class 1) with the best F1 (ties: the one closest to 0.5); 0.5 if undefined."""
    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) < 2:
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y_true, p_positive)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)[:-1]
    best = np.flatnonzero(np.isclose(f1, f1.max()))
    return float(thresholds[best[np.argmin(np.abs(thresholds[best] - 0.5))]])


def binary_metrics(
    y_true: np.ndarray, p_positive: np.ndarray, threshold: float, positive_class: str
) -> BinaryMetrics:
    """ROC AUC and PR AUC (average precision; NaN with one class only) and scores at `threshold`."""
    y_true, p_positive = np.asarray(y_true), np.asarray(p_positive)
    both = len(np.unique(y_true)) == 2
    predicted = (p_positive >= threshold).astype(int)
    return BinaryMetrics(
        positive_class=positive_class,
        roc_auc=float(roc_auc_score(y_true, p_positive)) if both else math.nan,
        pr_auc=float(average_precision_score(y_true, p_positive)) if both else math.nan,
        threshold=float(threshold),
        accuracy_at_threshold=float(accuracy_score(y_true, predicted)),
        f1_at_threshold=float(f1_score(y_true, predicted, zero_division=0)),
    )
