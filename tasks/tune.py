"""Tune task: the Optuna study of modelmill.tuning, with every trial a nested MLflow run.

The tuning run (parent) holds the configuration, the best params and value, and the Optuna
plots; each trial is a child run (params, per-epoch metrics, state complete/pruned/fail).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from prefect import get_run_logger

import optuna
from modelmill import tuning
from modelmill.config import Settings
from modelmill.secrets import mask_url
from tasks.context import RunContext
from tasks.progress import stage
from tasks.tracking import Tracker, connect, temp_dir, tracked_run, tracking_uri

STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "FINISHED", TrialState.FAIL: "FAILED"}
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")


class TrialRunLogger:
    """Optuna callback: one nested MLflow run per finished trial. Picklable for worker
    processes (holds the settings and the parent run id; the client is made per process)."""

    def __init__(self, settings: Settings, project_dir: str, parent_run_id: str, tags: dict[str, str]):
        self.settings_json, self.project_dir = settings.private_json(), project_dir
        self.parent_run_id, self.tags = parent_run_id, tags
        self._settings: Settings | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_settings": None}

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.log_trial(study.study_name, trial)

    def log_trial(self, study_name: str, trial: FrozenTrial) -> None:
        if self._settings is None:
            self._settings = Settings.model_validate_json(self.settings_json)
        state = trial.state.name.lower()
        tags = {
            **self.tags,
            "optuna.study_name": study_name,
            "optuna.trial_number": str(trial.number),
            "optuna.state": state,
            "optuna.retry_of": str(trial.system_attrs.get("failed_trial", "")),
            "worker": str(trial.user_attrs.get("worker", "")),  # the Dask worker's address, if any
        }
        run = Tracker.start(
            self._settings,
            self.project_dir,
            f"trial-{trial.number:03d}-{state}",
            tags,
            parent_run_id=self.parent_run_id,
        )
        run.log_params({**trial.params, "trial_number": trial.number})
        for epoch in trial.user_attrs.get(tuning.HISTORY_ATTR, []):
            run.log_metrics({k: epoch[k] for k in EPOCH_METRICS}, step=epoch["epoch"])
        if trial.value is not None:
            run.log_metrics({"value": trial.value, "best_epoch": trial.user_attrs.get("best_epoch", 0)})
        run.finish(STATUS.get(trial.state, "KILLED"))


@stage("tune")
def tune_study(
    project_dir: str,
    settings: Settings,
    data_version: str,
    run_name: str,
    tags: dict[str, str],
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study for this data version; returns the best params and value."""
    logger = get_run_logger()
    settings = settings.override(
        {"data.dir": str(Path(project_dir, settings.data.dir).resolve()), **stack_storage()}
    )
    tags = {**tags, "data_version": data_version, "flow_stage": "tune"}
    with tuning.schema_lock(tracking_uri(settings, project_dir)):  # cooperating launchers
        connect(settings, project_dir)  # create the MLflow schema and experiment once
    with tracked_run(settings, project_dir, run_name, tags, parent_run_id=parent_run_id) as parent:
        parent.log_params(settings.flat())
        trial_logger = TrialRunLogger(
            settings, project_dir, parent.run_id, {k: v for k, v in tags.items() if k != "flow_stage"}
        )
        logger.info(
            "tuning: %d trials in total, %s, pruner %s, storage %s",
            settings.tune.trials,
            f"Dask cluster {settings.tune.cluster}"
            if settings.tune.cluster
            else f"{settings.tune.workers} worker(s)",
            settings.tune.pruner,
            settings.flat()["tune.storage"],
        )
        if settings.tune.cluster:  # every trial a task run on a Dask worker
            from tasks.tune_dask import tune_on_cluster

            result = tune_on_cluster(
                settings, data_version, [trial_logger], settings.tune.cluster, project_dir
            )
        else:
            result = tuning.tune(settings, data_version, callbacks=[trial_logger], root=project_dir)
        study = optuna.load_study(study_name=result.study_name, storage=result.storage)
        log_missing_trials(parent, study, trial_logger)
        log_study_summary(parent, study, result)
    logger.info(
        "study %s: best %s = %s (trial %s); %s",
        result.study_name,
        settings.tune.metric,
        result.best_value,
        result.best_trial,
        result.states,
    )
    return {
        "study_name": result.study_name,
        "storage": mask_url(result.storage),
        "best_value": result.best_value,
        "best_params": result.best_params,
        "best_trial": result.best_trial,
        "states": result.states,
        "seconds": result.seconds,
        "mlflow_run_id": parent.run_id,
    }


def stack_storage() -> dict[str, str]:
    """The Optuna storage of the running stack (`modelmill up --postgres` sets it), if any."""
    url = os.environ.get("MODELMILL_OPTUNA_STORAGE")
    return {"tune.storage": url} if url else {}


def nest_tuning_run(ctx: RunContext, tuned: dict[str, Any]) -> None:
    """Show the tuning run (made before the retrain run) nested under it, and link both ways."""
    tracker = ctx.tracker()
    Tracker(tracker.client, tuned["mlflow_run_id"]).set_tags({"mlflow.parentRunId": ctx.run_id})
    tracker.set_tags({"tuning_run_id": tuned["mlflow_run_id"], "optuna.study_name": tuned["study_name"]})


def log_missing_trials(parent: Tracker, study: optuna.Study, trial_logger: TrialRunLogger) -> None:
    """Failed trials without a run (failed as stale after a kill -9, by any process) get one.

    Complete and pruned trials are logged by their own worker's callback; only the failed
    ones are reconciled, so two cooperating processes do not log a trial twice."""
    experiment_id = parent.client.get_run(parent.run_id).info.experiment_id
    runs = parent.client.search_runs(
        [experiment_id], filter_string=f"tags.`optuna.study_name` = '{study.study_name}'", max_results=50000
    )
    logged = {r.data.tags.get("optuna.trial_number") for r in runs}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if str(trial.number) not in logged:
            trial_logger.log_trial(study.study_name, trial)


def log_study_summary(parent: Tracker, study: optuna.Study, result: tuning.TuneResult) -> None:
    parent.set_tags({"optuna.study_name": result.study_name, "optuna.storage": mask_url(result.storage)})
    parent.log_metrics(
        {f"trials_{state}": n for state, n in result.states.items()} | {"tune_seconds": result.seconds}
    )
    if result.best_value is not None:
        parent.log_params(
            {f"best.{k}": v for k, v in result.best_params.items()} | {"best.trial_number": result.best_trial}
        )
        parent.log_metrics({"best_value": result.best_value})
    parent.log_dict({**vars(result), "storage": mask_url(result.storage)}, "tuning/result.json")
    with temp_dir("modelmill-tune-plots-") as tmp:
        for path in save_plots(study, Path(tmp)):
            parent.log_artifact(path, "tuning")


def save_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Optimization history, parameter importances, parallel coordinate, intermediate values (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    saved = []
    for name in ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
                ax = getattr(plots, f"plot_{name}")(study)
            figure = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
            figure.set_size_inches(10, 6)
            figure.tight_layout()
            path = folder / f"{name}.png"
            figure.savefig(path, dpi=100)
            plt.close(figure)
            saved.append(path)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few trials for this plot
            get_run_logger().warning("plot %s skipped: %s", name, exc)
    return saved
