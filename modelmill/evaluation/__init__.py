"""Evaluation on the test split: metrics, intervals, calibration, robustness, explanations, card.

Re-exports the names `modelmill.evaluation` had as a single module, so imports keep working."""

from modelmill.evaluation.metrics import (
    EvaluationReport,
    evaluate_model,
    evaluate_predictions,
    plot_confusion_matrix,
)

__all__ = ["EvaluationReport", "evaluate_model", "evaluate_predictions", "plot_confusion_matrix"]
