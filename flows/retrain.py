"""The nightly retrain, one task per stage (the Prefect graph is this diagram):

sync data -> import labels -> [tune] -> find reusable run -> validate -> drift -> split -> train
  -> evaluate -> gate -> register -> compress -> card -> summary

An unchanged run (same data version, outcome settings, code and libraries as a finished run)
stops after `find-reusable-run` and records which run it reused.
"""

from pathlib import Path
from typing import Any

from prefect import flow, runtime

from flows.alerts import alert_on_failure
from flows.compress import compress_stage
from flows.import_labels import import_new_labels
from flows.params import RetrainParams
from modelmill.config import Settings
from modelmill.errors import CompressionError, GateRejected, RegistryConflict
from tasks.card import model_card
from tasks.context import Lineage, RunContext, flow_run, lineage_of_this_run
from tasks.data import sync_data
from tasks.drift import check_drift, stop_for_drift
from tasks.evaluate import evaluate, gate
from tasks.reconcile import reconcile
from tasks.registry import Registration, register
from tasks.report import publish_summary
from tasks.reuse import find_reusable_run, record_skip, run_fingerprint
from tasks.split import SplitRef, split_data
from tasks.train import train_challenger
from tasks.tune import nest_tuning_run, tune_study
from tasks.validate import validate_data
from tasks.writers import writer


@flow(name="retrain", log_prints=True, on_failure=[alert_on_failure])
def retrain(params: RetrainParams = RetrainParams()) -> dict[str, Any]:
    project_dir, settings = str(Path(params.project_dir).resolve()), params.settings()
    with writer(project_dir, settings, "retrain"):  # data/, data.dvc and the champion alias
        summary = _retrain(project_dir, settings, params)
    if (summary.get("compression") or {}).get("error"):  # the run is finished and the promotion
        raise CompressionError(summary["compression"]["error"])  # stands; a later run retries it
    return summary


def _retrain(project_dir: str, settings: Settings, params: RetrainParams) -> dict[str, Any]:
    reconciled = reconcile(project_dir, settings, f"retrain {runtime.flow_run.name}")
    data_version = sync_data(project_dir, settings)
    data_version = import_new_labels(project_dir, params.config, settings, data_version)
    lineage = lineage_of_this_run(project_dir, data_version)
    tuned = None
    if params.tune:  # the study runs first, so the retrain run's params are the tuned ones
        tuned = tune_study(project_dir, settings.override({"tune.trials": params.tune}), data_version,
                           f"{runtime.flow_run.name}-tune", lineage.tags(flow="retrain"))  # fmt: skip
        settings = settings.override(tuned["best_params"])
    fingerprint = run_fingerprint(settings, data_version, lineage.code_version)
    tags = lineage.tags(flow="retrain", fingerprint=fingerprint)
    with flow_run(project_dir, settings, runtime.flow_run.name, tags) as ctx:
        if tuned is not None:
            nest_tuning_run(ctx, tuned)
        retrain_anyway = params.force or not settings.ops.skip_unchanged
        reusable = None if retrain_anyway else find_reusable_run(ctx, fingerprint)
        if reusable is not None:
            return retry_compression(ctx, record_skip(ctx, reusable, fingerprint), reconciled, lineage)
        validate_data(ctx, data_version)
        drift = check_drift(ctx, data_version)
        if stop_for_drift(settings, drift):  # drift.on_drift: retrain, and none was found
            return {"data_version": data_version, "skipped": "no drift", "drift": drift,
                    "mlflow_run_id": ctx.run_id}  # fmt: skip
        splits = split_data(ctx, data_version)
        checkpoint = train_challenger(ctx, splits)
        evaluation = evaluate(ctx, checkpoint, splits)
        decision = gate(ctx, evaluation)
        try:
            registered = register(ctx, checkpoint, decision, lineage, splits)
        except RegistryConflict:  # the champion moved since the gate: compare with the new one, once
            evaluation = evaluate(ctx, checkpoint, splits)
            decision = gate(ctx, evaluation)
            registered = register(ctx, checkpoint, decision, lineage, splits)
        compression = compress_champion(ctx, registered, lineage, splits)
        card = model_card(ctx, evaluation, registered, lineage, splits, compression, decision.reason)
        summary = publish_summary(ctx, {
            "data_version": data_version, "evaluation": evaluation.model_dump(),
            "registry": registered.model_dump(), "gate_reason": decision.reason,
            "compression": compression, "mlflow_run_id": ctx.run_id,
            "compression_note": compression_note(ctx.settings, registered, compression),
            "card": card, "gate_significant": decision.significant,
            "drift": drift,
        })  # fmt: skip
        if not decision.promote and settings.gate.fail_on_reject:
            raise GateRejected(f"gate rejected {registered.name} v{registered.version}: {decision.reason}")
    return summary


def compress_champion(
    ctx: RunContext, registered: Registration, lineage: Lineage, splits: SplitRef
) -> dict[str, Any] | None:
    """Variants of a newly promoted champion -> `<name>-compressed` (when compress.enabled)."""
    if not (ctx.settings.compress.enabled and registered.promoted):
        return None
    return compress_stage(ctx, registered.name, registered.version, lineage, splits)


def retry_compression(
    ctx: RunContext, skipped: dict[str, Any], reconciled: dict[str, Any], lineage: Lineage
) -> dict[str, Any]:
    """An unchanged run whose champion's compression failed last time retries only that."""
    version = reconciled["compress_version"]
    if version:
        splits = split_data(ctx, skipped["data_version"])
        name = ctx.settings.registry.model_name
        skipped["compression"] = compress_stage(ctx, name, version, lineage, splits)
    elif (skipped.get("compression") or {}).get("error"):
        skipped["compression"] = None  # retried and done since
    return skipped


def compression_note(settings: Settings, registered: Registration, compression: dict[str, Any] | None) -> str:
    if not settings.compress.enabled:
        return "off (compress.enabled: false)"
    if not registered.promoted:
        return "not run: the challenger was not promoted"
    if (compression or {}).get("error"):
        return f"failed (the promotion stands; the next run retries it): {compression['error']}"
    reg = (compression or {}).get("registered")
    note = f"{reg['name']} version {reg['version']} ({reg['variant']})" if reg else "no variant within budget"
    not_run = (compression or {}).get("not_applicable") or {}
    subsets = (compression or {}).get("notes") or {}
    return note + "".join(f"; {method} {why}" for method, why in {**not_run, **subsets}.items())
