"""The nightly retrain: sync data -> import labels -> (tune) -> validate -> train -> evaluate
-> gate -> register -> compress -> summary; skipped when data, configuration and code are unchanged."""

from pathlib import Path

from prefect import flow, runtime, task

from flows.alerts import alert_on_failure
from flows.compress import compress_stage
from flows.import_labels import ImportLabelsParams, import_labels
from flows.params import RetrainParams
from modelmill.config import Settings
from modelmill.errors import CompressionError, GateRejected, RegistryConflict
from tasks.context import close_run, git_commit, open_run
from tasks.data import sync_data
from tasks.evaluate import evaluate, gate
from tasks.labels import inbox_exports
from tasks.reconcile import reconcile
from tasks.registry import register
from tasks.report import publish_summary
from tasks.reuse import code_version, fingerprint_cache_key, record_skip, run_fingerprint
from tasks.train import train_challenger
from tasks.tune import nest_tuning_run, tune_study
from tasks.validate import validate_data
from tasks.writers import writer


def prepare_data(project_dir: str, settings: Settings, config: str) -> str:
    """The data version to train on: DVC sync, then any new Label Studio exports in the inbox."""
    data_version = sync_data(project_dir, settings)
    if inbox_exports(project_dir, settings):
        data_version = import_labels(ImportLabelsParams(project_dir=project_dir, config=config))[
            "data_version_after"
        ]
    return data_version


@task(name="train-evaluate-register", cache_key_fn=fingerprint_cache_key, persist_result=True)
def train_to_registry(ctx, data_version: str, lineage: dict, fingerprint: str) -> dict:
    """validate -> train -> evaluate -> gate -> register -> compress -> summary; cached by the
    run fingerprint (data version + resolved configuration + code)."""
    validate_data(ctx)
    checkpoint = train_challenger(ctx, data_version)
    evaluation = evaluate(ctx, checkpoint)
    decision = gate(ctx, evaluation)
    example = evaluation.pop("input_example")
    try:
        registered = register(ctx, checkpoint, decision, lineage, example)
    except RegistryConflict:  # the champion moved since the gate: compare with the new one, once
        evaluation = evaluate(ctx, checkpoint)
        decision = gate(ctx, evaluation)
        registered = register(ctx, checkpoint, decision, lineage, evaluation.pop("input_example"))
    compression = None  # variants of a newly promoted champion -> `<name>-compressed`
    if ctx.settings.compress.enabled and registered["promoted"]:
        compression = compress_stage(ctx, registered["name"], registered["version"], lineage)
    summary = {
        "data_version": data_version,
        "evaluation": evaluation,
        "registry": registered,
        "compression": compression,
        "gate_reason": decision.reason,
        "mlflow_run_id": ctx.run_id,
        "experiment_id": ctx.tracker().client.get_run(ctx.run_id).info.experiment_id,
    }
    summary["markdown"] = publish_summary(ctx, summary)
    if not decision.promote and ctx.settings.gate.fail_on_reject:
        raise GateRejected(
            f"gate rejected {registered['name']} version {registered['version']}: {decision.reason}"
        )
    return summary


@flow(name="retrain", log_prints=True, on_failure=[alert_on_failure])
def retrain(params: RetrainParams = RetrainParams()) -> dict:
    project_dir = str(Path(params.project_dir).resolve())
    with writer(project_dir, params.settings(), "retrain"):  # data/, data.dvc and the champion alias
        return _retrain(params)


def _retrain(params: RetrainParams) -> dict:
    project_dir, settings = str(Path(params.project_dir).resolve()), params.settings()
    lineage = {
        "git_commit": git_commit(project_dir),
        "code_version": code_version(),
        "prefect_flow_run_id": str(runtime.flow_run.id),
        "prefect_flow_run_name": runtime.flow_run.name,
    }
    data_version = prepare_data(project_dir, settings, params.config)
    lineage["data_version"] = data_version
    tuned = None
    if params.tune:  # the study runs before the retrain run opens, so its params are the tuned ones
        tuned = tune_study(
            project_dir,
            settings.override({"tune.trials": params.tune}),
            data_version,
            f"{runtime.flow_run.name}-tune",
            {**lineage, "flow": "retrain"},
        )
        settings = settings.override(tuned["best_params"])
    ctx = open_run(project_dir, settings, runtime.flow_run.name, {**lineage, "flow": "retrain"})
    try:
        reconciled = reconcile(project_dir, settings, f"retrain {runtime.flow_run.name}")
        if tuned:
            nest_tuning_run(ctx, tuned)
        fingerprint = run_fingerprint(project_dir, settings, data_version, lineage["code_version"])
        retrain_anyway = params.force or not settings.ops.skip_unchanged
        summary = train_to_registry.with_options(refresh_cache=retrain_anyway)(
            ctx, data_version, lineage, fingerprint
        )
        if summary["mlflow_run_id"] != ctx.run_id:  # Prefect's cache answered: nothing changed
            summary = record_skip(ctx, summary, fingerprint)
            if reconciled["compress_version"]:  # only the compression failed last time: retry it
                name = settings.registry.model_name
                summary["compression"] = compress_stage(ctx, name, reconciled["compress_version"], lineage)
            elif (summary.get("compression") or {}).get("error"):
                summary["compression"] = None  # retried and done since
        if (summary.get("compression") or {}).get("error"):  # reported; the promotion stands
            raise CompressionError(summary["compression"]["error"])
    except BaseException:
        close_run(ctx, "FAILED")
        raise
    close_run(ctx, "FINISHED")
    return summary
