"""Evaluate and gate stages: challenger and current champion on the same test split; the
champion/challenger decision."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger
from pydantic import BaseModel

from modelmill.evaluation import EvaluationReport, evaluate_model, plot_confusion_matrix
from modelmill.gate import GateDecision, decide
from tasks.checkpoint import load_checkpoint
from tasks.context import RunContext
from tasks.progress import stage
from tasks.registry import CHAMPION, alias_version, load_version
from tasks.split import SplitRef
from tasks.tracking import Tracker


class Evaluation(BaseModel):
    """Test-split scores of the challenger and of the champion (when there is one)."""

    challenger: dict[str, float]
    champion: dict[str, float] | None = None
    champion_version: str | None = None


@stage("evaluate")
def evaluate(ctx: RunContext, checkpoint: str, splits: SplitRef) -> Evaluation:
    """Metrics of the challenger (and of the champion, when there is one) on the test split."""
    logger, tracker = get_run_logger(), ctx.tracker()
    classes = list(splits.schema().classes)
    x_test, y_test = splits.xy("test")
    report = evaluate_model(load_checkpoint(checkpoint), x_test, y_test, classes)
    tracker.log_metrics(report.metrics("test_"))
    _log_report(ctx, tracker, report, "challenger")
    logger.info(
        "challenger: accuracy %.4f  macro F1 %.4f on %d test items",
        report.accuracy, report.macro_f1, report.n,
    )  # fmt: skip
    out = Evaluation(challenger=_scores(report))
    name = ctx.settings.registry.model_name
    champion = alias_version(tracker.client, name, CHAMPION)
    if champion is not None:
        champ_report = evaluate_model(load_version(name, champion.version), x_test, y_test, classes)
        tracker.log_metrics(champ_report.metrics("champion_test_"))
        _log_report(ctx, tracker, champ_report, f"champion-v{champion.version}")
        logger.info(
            "champion v%s: accuracy %.4f  macro F1 %.4f on the same split",
            champion.version, champ_report.accuracy, champ_report.macro_f1,
        )  # fmt: skip
        out.champion, out.champion_version = _scores(champ_report), str(champion.version)
    return out


@stage("gate")
def gate(ctx: RunContext, evaluation: Evaluation) -> GateDecision:
    """Promote only if the challenger is not worse than the champion by more than the tolerance."""
    cfg = ctx.settings.gate
    champion = evaluation.champion[cfg.metric] if evaluation.champion else None
    decision = decide(evaluation.challenger[cfg.metric], champion, cfg)
    ctx.tracker().set_tags(
        {"gate": "promote" if decision.promote else "reject", "gate_reason": decision.reason}
    )
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
