"""Evaluation beyond accuracy as one core call: intervals, calibration, robustness and explanations
of a model on its splits, every figure written into one folder (the evaluate task logs it)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from modelmill.atomic import atomic_write_bytes
from modelmill.config import EvaluationConfig
from modelmill.evaluation.calibration import (
    Temperature,
    expected_calibration_error,
    fit_temperature,
    plot_reliability_diagram,
    predict_logits,
    save_temperature,
)
from modelmill.evaluation.explanations import KIND_BASELINES, ExplanationReport, explain, plot_attributions
from modelmill.evaluation.importance import ColumnImportance, column_importance, plot_importance
from modelmill.evaluation.intervals import Interval, bootstrap_intervals
from modelmill.evaluation.robustness import KIND_BOUNDS, RobustnessReport, evaluate_robustness
from modelmill.evaluation.sanity import failed_names
from modelmill.evaluation.text import TextInputs, explain_text, render_token_attributions, text_robustness

XY = tuple[torch.Tensor, torch.Tensor]


@dataclass
class SuiteResult:
    test_pred: NDArray[np.int64]  # the challenger's predictions: the champion is paired on them
    intervals: dict[str, Interval]
    calibration: dict[str, Any]
    temperature: Temperature | None = None
    robustness: RobustnessReport | None = None
    explanations: ExplanationReport | None = None
    importance: ColumnImportance | None = None  # tabular: per original column
    files: dict[str, Path] = field(default_factory=dict)  # figure name -> file in the suite's folder
    seconds: dict[str, float] = field(default_factory=dict)

    def failed_checks(self) -> list[str]:
        parts = [p for p in (self.robustness, self.explanations) if p is not None]
        return [name for p in parts for name in failed_names(p.checks)]

    def metrics(self) -> dict[str, float]:
        out = {f"test_{m}_ci_low": iv.low for m, iv in self.intervals.items()}
        out.update({f"test_{m}_ci_high": iv.high for m, iv in self.intervals.items()})
        out.update({f"calibration_{k}": float(v) for k, v in self.calibration.items() if _number(v)})
        for part in (self.robustness, self.explanations, self.importance):
            out.update(part.metrics() if part is not None else {})
        return out

    def card_sections(self) -> dict[str, Any]:
        """The calibration, robustness and explanations sections of a model card."""
        robustness = self.robustness.as_dict() if self.robustness else {}
        if self.robustness:
            robustness["strongest"] = self.robustness.strongest()
        explanations = self.explanations.as_dict() if self.explanations else {}
        if self.importance is not None:
            explanations["column_importance"] = self.importance.as_dict()
        return {"calibration": self.calibration, "robustness": robustness, "explanations": explanations}


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def run_suite(
    model: nn.Module,
    val: XY,
    test: XY,
    reference_x: torch.Tensor,
    classes: list[str],
    cfg: EvaluationConfig,
    out_dir: str | Path,
    kind: str = "image",
    feature_groups: dict[str, list[int]] | None = None,
    text: TextInputs | None = None,
    test_logits: torch.Tensor | None = None,
) -> SuiteResult:
    """Every configured extra of `model`; figures (PNG, HTML, JSON) land in out_dir. `reference_x`
    (the training inputs) gives the valid input range of the data kind for the attacks;
    `feature_groups` (tabular: original column -> its feature indices) adds column importance;
    `text` (the text kind: raw test texts, encoding, vocabulary) its token explanations and
    perturbations; `test_logits`: the model's logits on test[0] when the caller has them already."""
    out, seconds = Path(out_dir), {}
    out.mkdir(parents=True, exist_ok=True)
    tick = time.perf_counter()
    logits = predict_logits(model, test[0]) if test_logits is None else test_logits
    pred = logits.argmax(1).numpy().astype(np.int64)
    ic = cfg.intervals
    intervals = bootstrap_intervals(test[1].numpy(), pred, len(classes), ic.resamples, ic.level, ic.seed)
    seconds["intervals"] = time.perf_counter() - tick
    result = SuiteResult(pred, intervals, {})
    _calibrate(result, model, logits, val, test[1], cfg, out)
    seconds["calibration"] = time.perf_counter() - tick - sum(seconds.values())
    if kind == "text" and text is not None:
        _text_extras(result, model, test, classes, cfg, text, out, seconds, tick)
    if cfg.robustness.enabled and kind in KIND_BOUNDS:  # attacks need continuous inputs (not token ids)
        bounds = KIND_BOUNDS[kind](reference_x)
        result.robustness = evaluate_robustness(model, *test, cfg.robustness, bounds)
        seconds["robustness"] = time.perf_counter() - tick - sum(seconds.values())
    if cfg.explanations.enabled and kind in KIND_BASELINES:
        result.explanations = explain(model, *test, cfg.explanations, kind=kind)
        if kind == "image":
            grid = plot_attributions(result.explanations, test[0], str(out / "attributions.png"))
            result.files["attributions"] = Path(grid)
        if feature_groups and result.explanations.ig is not None:
            ex = cfg.explanations
            result.importance = column_importance(
                model, *test, result.explanations.ig, feature_groups, ex.permutation_repeats, ex.seed
            )
            chart = plot_importance(result.importance, out / "column_importance.png")
            result.files["column_importance"] = chart
        seconds["explanations"] = time.perf_counter() - tick - sum(seconds.values())
    result.seconds = seconds
    _write_figures(result, out)
    return result


def _text_extras(
    result: SuiteResult, model: nn.Module, test: XY, classes: list[str], cfg: EvaluationConfig,
    text: TextInputs, out: Path, seconds: dict[str, float], tick: float,
) -> None:  # fmt: skip
    if cfg.robustness.enabled:
        result.robustness = text_robustness(model, test[1], cfg.robustness, text)
        seconds["robustness"] = time.perf_counter() - tick - sum(seconds.values())
    if cfg.explanations.enabled:
        result.explanations = explain_text(model, *test, cfg.explanations, text)
        page = render_token_attributions(
            result.explanations, *test, classes, text, out / "token_attributions.html"
        )
        result.files["token_attributions"] = page
        seconds["explanations"] = time.perf_counter() - tick - sum(seconds.values())


def _calibrate(
    result: SuiteResult,
    model: nn.Module,
    test_logits: torch.Tensor,
    val: XY,
    y_test: torch.Tensor,
    cfg: EvaluationConfig,
    out: Path,
) -> None:
    bins, y = cfg.calibration.bins, y_test.numpy()
    probs = torch.softmax(test_logits, 1).numpy()
    result.calibration = {"ece": expected_calibration_error(probs, y, bins), "bins": bins}
    scaled = None
    if cfg.calibration.temperature_scaling:
        t = fit_temperature(predict_logits(model, val[0]), val[1], fitted_on="val")
        scaled = torch.softmax(t.apply(test_logits), 1).numpy()
        result.temperature = t
        result.calibration.update(
            temperature=t.temperature,
            ece_calibrated=expected_calibration_error(scaled, y, bins),
            val_nll_before=t.nll_before,
            val_nll_after=t.nll_after,
        )
        result.files["temperature"] = save_temperature(t, out)
    result.files["reliability"] = plot_reliability_diagram(
        probs, y, out / "reliability.png", bins, calibrated=scaled
    )


def _write_figures(result: SuiteResult, out: Path) -> None:
    record = {
        "intervals": {m: iv.as_dict() for m, iv in result.intervals.items()},
        **result.card_sections(),
        "failed_checks": result.failed_checks(),
        "seconds": result.seconds,
    }
    path = out / "evaluation.json"
    atomic_write_bytes(path, json.dumps(record, indent=2).encode())
    result.files["evaluation"] = path
