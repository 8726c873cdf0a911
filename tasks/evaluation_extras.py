"""The evaluate stage's extras, logged to the run: intervals, calibration, robustness, explanations
(modelmill.evaluation.suite) and the paired comparison with the champion on the same items."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelmill.evaluation.intervals import paired_bootstrap
from modelmill.evaluation.suite import XY, run_suite
from modelmill.evaluation.text import TextInputs
from tasks.context import RunContext
from tasks.tracking import Tracker

ARTIFACT_DIR = "evaluation"  # figures land beside the confusion matrices


def challenger_extras(
    ctx: RunContext,
    tracker: Tracker,
    model: nn.Module,
    xy: dict[str, XY],
    classes: list[str],
    kind: str,
    feature_groups: dict[str, list[int]] | None = None,
    text: TextInputs | None = None,
    test_logits: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Every configured extra of the challenger, metrics and figures on the run; a small record back
    (with the test predictions under `test_pred`, for the paired comparison). `feature_groups`
    (tabular): the preprocessed features of each original column, for column importance."""
    out = Path(ctx.work_dir, "evaluation-extras")
    suite = run_suite(
        model,
        xy["val"],
        xy["test"],
        xy["train"][0],
        classes,
        ctx.settings.evaluation,
        out,
        kind=kind,
        feature_groups=feature_groups,
        text=text,
        test_logits=test_logits,
    )
    tracker.log_metrics(
        {**suite.metrics(), **{f"evaluation_seconds_{k}": v for k, v in suite.seconds.items()}}
    )
    tracker.log_artifact(out, ARTIFACT_DIR)
    tracker.set_tags({"evaluation_failed_checks": ",".join(suite.failed_checks()) or "none"})
    return {
        "test_pred": suite.test_pred.tolist(),
        "intervals": {m: iv.as_dict() for m, iv in suite.intervals.items()},
        "failed_checks": suite.failed_checks(),
        "robust_accuracy": suite.robustness.strongest() if suite.robustness else None,
        "sections": suite.card_sections(),
        "artifacts": {name: f"{ARTIFACT_DIR}/{path.name}" for name, path in suite.files.items()},
        "seconds": suite.seconds,
    }


def champion_comparison(
    ctx: RunContext,
    tracker: Tracker,
    y_test: torch.Tensor,
    challenger_pred: list[int],
    champion_pred: np.ndarray,
    n_classes: int,
) -> dict[str, dict[str, Any]]:
    """challenger - champion per metric, paired on the same test items; logged as metrics and JSON."""
    ic = ctx.settings.evaluation.intervals
    paired = paired_bootstrap(
        y_test.numpy(), challenger_pred, champion_pred, n_classes, ic.resamples, ic.level, ic.seed
    )
    metrics = {}
    for m, comparison in paired.items():
        diff = comparison.difference
        metrics.update(
            {
                f"paired_{m}_difference": diff.point,
                f"paired_{m}_difference_low": diff.low,
                f"paired_{m}_difference_high": diff.high,
                f"champion_test_{m}_ci_low": comparison.champion.low,
                f"champion_test_{m}_ci_high": comparison.champion.high,
            }
        )
    tracker.log_metrics(metrics)
    record = {m: c.as_dict() for m, c in paired.items()}
    tracker.log_dict(record, f"{ARTIFACT_DIR}/paired_bootstrap.json")
    return record
