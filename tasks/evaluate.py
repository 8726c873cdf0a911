"""Evaluate task: challenger and current champion on the same test split; the gate."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from modelmill.evaluation import EvaluationReport, evaluate_model, plot_confusion_matrix
from modelmill.gate import GateDecision, decide
from tasks.context import RunContext
from tasks.registry import CHAMPION, alias_version, load_version
from tasks.splits import load_splits


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(ctx: RunContext, checkpoint: str) -> dict:
    """Metrics of the challenger (and of the champion, when there is one) on the test split."""
    logger, tracker = get_run_logger(), ctx.tracker()
    dataset, _, xy = load_splits(ctx)
    classes = list(dataset.schema.classes)
    x_test, y_test = xy["test"]
    report = evaluate_model(torch.load(checkpoint, weights_only=False), x_test, y_test, classes)
    tracker.log_metrics(report.metrics("test_"))
    _log_report(ctx, tracker, report, "challenger")
    logger.info(
        "challenger: accuracy %.4f  macro F1 %.4f on %d test items",
        report.accuracy,
        report.macro_f1,
        report.n,
    )
    out = {"challenger": _summary(report), "champion": None, "champion_version": None}
    name = ctx.settings.registry.model_name
    champion = alias_version(tracker.client, name, CHAMPION)
    if champion is not None:
        champ_report = evaluate_model(load_version(name, champion.version), x_test, y_test, classes)
        tracker.log_metrics(champ_report.metrics("champion_test_"))
        _log_report(ctx, tracker, champ_report, f"champion-v{champion.version}")
        logger.info(
            "champion v%s: accuracy %.4f  macro F1 %.4f on the same split",
            champion.version,
            champ_report.accuracy,
            champ_report.macro_f1,
        )
        out.update(champion=_summary(champ_report), champion_version=str(champion.version))
    out["input_example"] = x_test[:4].numpy()
    return out


@task(name="gate", cache_policy=NO_CACHE)
def gate(ctx: RunContext, evaluation: dict) -> GateDecision:
    """Promote only if the challenger is not worse than the champion by more than the tolerance."""
    cfg = ctx.settings.gate
    champion = evaluation["champion"][cfg.metric] if evaluation["champion"] else None
    decision = replace(
        decide(evaluation["challenger"][cfg.metric], champion, cfg),
        champion_version=evaluation["champion_version"],
    )
    ctx.tracker().set_tags(
        {"gate": "promote" if decision.promote else "reject", "gate_reason": decision.reason}
    )
    get_run_logger().info("gate: %s", decision.reason)
    return decision


def _summary(report: EvaluationReport) -> dict:
    return {
        "accuracy": report.accuracy,
        "macro_precision": report.macro_precision,
        "macro_recall": report.macro_recall,
        "macro_f1": report.macro_f1,
        "n": report.n,
    }


def _log_report(ctx: RunContext, tracker, report: EvaluationReport, who: str) -> None:
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
