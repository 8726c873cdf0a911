"""Evaluate and gate stages: challenger and current champion on the same test split; the
champion/challenger decision."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from pydantic import BaseModel

from modelmill.evaluation import EvaluationReport, evaluate_predictions, plot_confusion_matrix
from modelmill.evaluation.calibration import predict_logits
from modelmill.evaluation.intervals import PairedComparison
from modelmill.evaluation.text import TextInputs, text_inputs
from modelmill.gate import GateDecision, decide
from tasks.checkpoint import load_checkpoint
from tasks.context import RunContext
from tasks.evaluation_extras import challenger_extras, champion_comparison
from tasks.progress import stage
from tasks.registry import CHAMPION, alias_version, load_version, split_definition_of
from tasks.split import SplitRef
from tasks.tracking import Tracker


class Evaluation(BaseModel):
    """Test-split scores of the challenger and of the champion (when there is one)."""

    challenger: dict[str, float]
    champion: dict[str, float] | None = None
    champion_version: str | None = None
    champion_not_comparable: str | None = None  # why the champion's score cannot be compared
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
    challenger = load_checkpoint(checkpoint)
    logits = predict_logits(challenger, x_test)  # once: metrics, extras and the paired comparison
    report = evaluate_predictions(y_test.numpy(), logits.argmax(1).numpy(), classes)
    tracker.log_metrics(report.metrics("test_"))
    binary = _binary(challenger, splits, logits, y_test) if len(classes) == 2 else {}
    tracker.log_metrics(binary)
    _log_report(ctx, tracker, report, "challenger")
    logger.info(
        "challenger: accuracy %.4f  macro F1 %.4f on %d test items",
        report.accuracy, report.macro_f1, report.n,
    )  # fmt: skip
    kind = getattr(splits.schema(), "kind", "image")
    groups = getattr(splits.preprocessor(), "feature_groups", None)  # tabular: features per column
    text = _text_inputs(splits, len(y_test)) if kind == "text" else None
    extras = challenger_extras(
        ctx, tracker, challenger, xy, classes, kind, groups() if groups else None, text, logits
    )
    test_pred = extras.pop("test_pred")
    if extras["failed_checks"]:
        logger.warning("evaluation sanity checks failed: %s", ", ".join(extras["failed_checks"]))
    out = Evaluation(
        challenger={**_scores(report), **{k.removeprefix("test_"): v for k, v in binary.items()}},
        per_class=report.per_class,
        extras=extras,
    )
    name = ctx.settings.registry.model_name
    champion = alias_version(tracker.client, name, CHAMPION)
    if champion is not None:
        x_champion = _champion_inputs(tracker, champion.run_id, splits, x_test)
        champion_model = load_version(name, champion.version)
        champion_pred = predict_logits(champion_model, x_champion).argmax(1).numpy()
        champ_report = evaluate_predictions(y_test.numpy(), champion_pred, classes)
        tracker.log_metrics(champ_report.metrics("champion_test_"))
        _log_report(ctx, tracker, champ_report, f"champion-v{champion.version}")
        logger.info(
            "champion v%s: accuracy %.4f  macro F1 %.4f on the same split",
            champion.version, champ_report.accuracy, champ_report.macro_f1,
        )  # fmt: skip
        out.paired = champion_comparison(ctx, tracker, y_test, test_pred, champion_pred, len(classes))
        out.champion, out.champion_version = _scores(champ_report), str(champion.version)
        theirs, ours = champion.tags.get("split_definition"), split_definition_of(ctx.settings)
        if theirs is not None and theirs != ours:  # it may have trained on items of this test split
            out.champion_not_comparable = f"champion v{champion.version} was split with {theirs}, not {ours}"
            logger.warning("not comparable: %s", out.champion_not_comparable)
    return out


def _text_inputs(splits: SplitRef, n_test: int) -> TextInputs:
    """The raw test texts (in the test tensors' order) and the fitted tokenizer, for the text checks."""
    preprocessor = splits.preprocessor()
    texts = splits.test_rows()[preprocessor.text_column].fillna("").astype(str).tolist()
    if len(texts) != n_test:
        raise ValueError(f"{splits.path}: {len(texts)} raw test rows for {n_test} test items")
    return text_inputs(preprocessor, texts)


def _binary(model, splits: SplitRef, test_logits, y_test) -> dict[str, float]:
    """ROC AUC, PR AUC and the decision threshold (best F1 on the val split) applied to test."""
    import torch

    from modelmill.binary_metrics import binary_metrics, choose_threshold
    from modelmill.training import predict_proba

    x_val, y_val = splits.xy("val")
    threshold = choose_threshold(y_val.numpy(), predict_proba(model, x_val)[:, 1].numpy())
    positive = splits.schema().classes[1]
    p_test = torch.softmax(test_logits, dim=1)[:, 1].numpy()
    return binary_metrics(y_test.numpy(), p_test, threshold, positive).metrics("test_")


def _champion_inputs(tracker: Tracker, run_id: str, splits: SplitRef, x_test):
    """The test rows as the champion's own fitted preprocessor (logged by its run) makes them."""
    from modelmill.data import to_tensors
    from modelmill.kinds import preprocessor_from_state

    state = logged_preprocessor(run_id)
    if state == splits.preprocessor_state():
        return x_test
    if state is None:  # a champion from before preprocessors were logged: pixels scaled to [0, 1]
        return to_tensors(splits.test_rows(), splits.schema())[0]
    return preprocessor_from_state(state).transform(splits.test_rows())


def logged_preprocessor(run_id: str) -> dict | None:
    """The preprocessor state a run logged (None: a run from before preprocessors were logged)."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/preprocessing/preprocessor.json")
    except (MlflowException, OSError):
        return None


@stage("gate")
def gate(ctx: RunContext, evaluation: Evaluation) -> GateDecision:
    """Promote only if the challenger is not worse than the champion by more than the tolerance."""
    cfg = ctx.settings.gate
    champion = evaluation.champion[cfg.metric] if evaluation.champion else None
    if evaluation.champion_not_comparable:  # judged on the floor (gate.min_score) alone
        champion = None
    paired = PairedComparison.from_dict(evaluation.paired[cfg.metric]) if evaluation.paired else None
    if champion is None:
        paired = None
    robust = evaluation.extras.get("robust_accuracy")
    decision = replace(  # the version compared against: the champion alias moves compare-and-set
        decide(evaluation.challenger[cfg.metric], champion, cfg, paired=paired, robust_accuracy=robust),
        champion_version=evaluation.champion_version,
    )
    if evaluation.champion_not_comparable:
        note = f"{evaluation.champion_not_comparable}: not comparable, judged on gate.min_score only; "
        decision = replace(decision, reason=note + decision.reason)
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
