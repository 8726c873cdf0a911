"""Evaluate and gate stages: challenger and current champion on the same test split; the
champion/challenger decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger
from pydantic import BaseModel

from modelmill.evaluation import EvaluationReport, evaluate_model, plot_confusion_matrix
from modelmill.evaluation.intervals import PairedComparison
from modelmill.gate import GateDecision, decide
from tasks.checkpoint import load_checkpoint
from tasks.context import RunContext
from tasks.evaluation_extras import challenger_extras, champion_comparison
from tasks.progress import stage
from tasks.registry import CHAMPION, alias_version, load_version
from tasks.split import SplitRef
from tasks.tracking import Tracker


class Evaluation(BaseModel):
    """Test-split scores of the challenger and of the champion (when there is one)."""

    challenger: dict[str, float]
    champion: dict[str, float] | None = None
    champion_version: str | None = None
    per_class: dict[str, dict[str, float]] = {}
    extras: dict[str, Any] = {}  # intervals, figures, checks (tasks.evaluation_extras)
    paired: dict[str, dict[str, Any]] | None = None  # metric -> challenger-vs-champion comparison


@stage("evaluate")
def evaluate(ctx: RunContext, checkpoint: str, splits: SplitRef) -> Evaluation:
    """Metrics of the challenger (and of the champion, when there is one) on the test split."""
    logger, tracker = get_run_logger(), ctx.tracker()
    classes = list(splits.schema().classes)
    xy = splits.all_xy()
    x_test, y_test = xy["test"]
    model = load_checkpoint(checkpoint)
    report = evaluate_model(model, x_test, y_test, classes)
    tracker.log_metrics(report.metrics("test_"))
    _log_report(ctx, tracker, report, "challenger")
    logger.info(
        "challenger: accuracy %.4f  macro F1 %.4f on %d test items",
        report.accuracy, report.macro_f1, report.n,
    )  # fmt: skip
    extras = challenger_extras(ctx, tracker, model, xy, classes, getattr(splits.schema(), "kind", "image"))
    test_pred = extras.pop("test_pred")
    if extras["failed_checks"]:
        logger.warning("evaluation sanity checks failed: %s", ", ".join(extras["failed_checks"]))
    out = Evaluation(challenger=_scores(report), per_class=report.per_class, extras=extras)
    name = ctx.settings.registry.model_name
    champion = alias_version(tracker.client, name, CHAMPION)
    if champion is not None:
        champion_model = load_version(name, champion.version)
        champ_report = evaluate_model(champion_model, x_test, y_test, classes)
        tracker.log_metrics(champ_report.metrics("champion_test_"))
        _log_report(ctx, tracker, champ_report, f"champion-v{champion.version}")
        logger.info(
            "champion v%s: accuracy %.4f  macro F1 %.4f on the same split",
            champion.version, champ_report.accuracy, champ_report.macro_f1,
        )  # fmt: skip
        out.paired = champion_comparison(
            ctx, tracker, champion_model, x_test, y_test, test_pred, len(classes)
        )
        out.champion, out.champion_version = _scores(champ_report), str(champion.version)
    return out


@stage("gate")
def gate(ctx: RunContext, evaluation: Evaluation) -> GateDecision:
    """Promote only if the challenger is not worse than the champion by more than the tolerance."""
    cfg = ctx.settings.gate
    champion = evaluation.champion[cfg.metric] if evaluation.champion else None
    paired = PairedComparison.from_dict(evaluation.paired[cfg.metric]) if evaluation.paired else None
    robust = evaluation.extras.get("robust_accuracy")
    decision = decide(evaluation.challenger[cfg.metric], champion, cfg, paired=paired, robust_accuracy=robust)
    ctx.tracker().set_tags({
        "gate": "promote" if decision.promote else "reject", "gate_reason": decision.reason,
        "gate_rule": decision.rule, "gate_significant": str(decision.significant).lower(),
    })  # fmt: skip
    get_run_logger().info("gate: %s", decision.reason)
    return decision


def _scores(report: EvaluationReport) -> dict[str, float]:
    return {
        "accuracy": report.accuracy,
        "macro_precision": report.macro_precision,
        "macro_recall": report.macro_recall,
        "macro_f1": report.macro_f1,
        "n": report.n,
    }


def _log_report(ctx: RunContext, tracker: Tracker, report: EvaluationReport, who: str) -> None:
    png = plot_confusion_matrix(
        report,
        Path(ctx.work_dir, f"confusion_{who}.png"),
        title=f"{who}: accuracy {report.accuracy:.3f}, macro F1 {report.macro_f1:.3f}",
    )
    tracker.log_artifact(png, "evaluation")
    tracker.log_dict(
        {"per_class": report.per_class, "confusion": report.confusion, "classes": report.classes},
        f"evaluation/{who}_per_class.json",
    )
