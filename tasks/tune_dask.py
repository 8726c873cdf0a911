"""Trials on a Dask cluster through prefect-dask: every trial a Prefect task run on a Dask
worker, all of them on the one Optuna RDB study (tune.cluster: local:N or tcp://HOST:PORT)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect_dask import DaskTaskRunner

import optuna
from modelmill import tuning
from modelmill.config import Settings
from modelmill.errors import ConfigError, TuningError

WORKER_ATTR = "worker"  # Optuna user attribute: the Dask worker's address (an MLflow tag too)
WORKER_PID_ATTR = "worker_pid"
_splits: dict[str, dict[str, Any]] = {}  # per worker process: the tensors, read once


def task_runner(cluster: str) -> DaskTaskRunner:
    """prefect-dask's runner for `local:N` (a LocalCluster of N one-thread worker processes on
    127.0.0.1) or `tcp://HOST:PORT` (an existing `dask scheduler`)."""
    kind, _, rest = cluster.partition(":")
    if kind == "local":
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": int(rest),
                "threads_per_worker": 1,
                "processes": True,
                "host": "127.0.0.1",
                "silence_logs": 40,
            },
        )
    return DaskTaskRunner(address=cluster)


@contextmanager
def api_for_workers() -> Iterator[None]:
    """Workers report their task runs to this flow's API. With Prefect's ephemeral API (no
    PREFECT_API_URL) that is the server this process started: hand its URL to the workers,
    or each worker would start an ephemeral server of its own."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    if not server.running:
        server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield


def _worker_identity() -> tuple[str, int]:
    from distributed import get_worker

    try:
        return get_worker().address, os.getpid()
    except ValueError:  # not on a Dask worker (task.fn called directly)
        return f"local-{os.getpid()}", os.getpid()


def _load_splits(settings: Settings) -> dict[str, Any]:
    key = settings.data.model_dump_json() + settings.split.model_dump_json()
    if key not in _splits:
        _splits[key] = tuning.load_splits(settings)
    return _splits[key]


@task(name="trial", cache_policy=NO_CACHE, task_run_name="trial-{slot}")
def run_trial(
    settings_json: str, name: str, url: str, slot: int, callbacks: list, deadline: float | None
) -> dict:
    """One trial of the study on this Dask worker (a retry of a stale trial first, if queued)."""
    if deadline is not None and time.time() > deadline:
        return {"slot": slot, "state": "skipped (tune.timeout)"}
    settings = Settings.model_validate_json(settings_json)
    cfg = settings.tune
    storage = tuning.open_storage(url, cfg)
    seen = len(optuna.load_study(study_name=name, storage=storage).trials)
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=tuning.make_sampler(cfg, 1009 * (slot + 1) + seen),
        pruner=tuning.make_pruner(cfg),
    )
    address, pid = _worker_identity()
    objective = tuning.Objective(settings, _load_splits(settings))
    started: list[int] = []

    def on_worker(trial: optuna.Trial) -> float:
        started.append(trial.number)
        trial.set_user_attr(WORKER_ATTR, address)
        trial.set_user_attr(WORKER_PID_ATTR, pid)
        return objective(trial)

    study.optimize(
        on_worker, n_trials=1, callbacks=callbacks, catch=(FloatingPointError, RuntimeError, ValueError)
    )
    trial = study.get_trials(deepcopy=False)[started[0]] if started else None
    state = trial.state.name.lower() if trial else "none"
    return {"slot": slot, "trial": started[0] if started else None, "state": state, "worker": address}


def _still_to_run(study: optuna.Study, trials: int) -> tuple[int, int]:
    """(trials to submit now, trials running elsewhere): the ones missing from `trials` and at
    least every queued retry of a stale trial (its own worker died)."""
    missing = trials - tuning.started_trials(study)  # fails stale trials, queues their retries
    all_trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state == TrialState.WAITING for t in all_trials)
    running = sum(t.state == TrialState.RUNNING for t in all_trials)
    return max(missing, waiting, 0), running


def run_on_cluster(settings: Settings, name: str, url: str, callbacks: list, cluster: str) -> list[dict]:
    """Submit one trial task per missing trial until the study holds tune.trials finished ones.

    A worker killed mid-trial: Dask reruns its task elsewhere (a new trial); the killed trial
    goes stale after tune.grace_period, is failed and queued again, and a later round runs it.
    """
    cfg, payload = settings.tune, settings.private_json()
    deadline = time.time() + cfg.timeout if cfg.timeout else None
    storage, done, slot = tuning.open_storage(url, cfg), [], 0
    with api_for_workers(), task_runner(cluster) as runner:
        for _ in range(cfg.max_retry + 3):  # rounds: the last ones only pick up retries
            if deadline is not None and time.time() > deadline:
                break
            todo, running = _still_to_run(optuna.load_study(study_name=name, storage=storage), cfg.trials)
            if not todo and not running:
                break
            if not todo:  # a trial of a dead worker, not yet stale: wait for its heartbeat to age
                time.sleep(cfg.grace_period + cfg.heartbeat_interval)
                continue
            futures = [
                runner.submit(
                    run_trial,
                    {
                        "settings_json": payload,
                        "name": name,
                        "url": url,
                        "slot": slot + i,
                        "callbacks": callbacks,
                        "deadline": deadline,
                    },
                )
                for i in range(todo)
            ]
            slot += todo
            done += _collect(futures, name)
    return done


def _collect(futures: list, name: str) -> list[dict]:
    results, failed = [], []
    for future in futures:
        future.wait()
        if future.state.is_completed():
            results.append(future.result())
        else:
            failed.append(f"{future.state.name}: {future.state.message}")
    if failed:
        raise TuningError(
            f"{len(failed)} trial task(s) on the Dask cluster failed ({failed[0]}); the study "
            f"'{name}' keeps its finished trials (run the same command again to resume)"
        )
    return results


def tune_on_cluster(
    settings: Settings, data_version: str, callbacks: list, cluster: str, root: str | Path = "."
) -> tuning.TuneResult:
    """tuning.tune with the trials on a Dask cluster: the schemas and the study are created
    here, once, before any worker starts (parallel schema creation on sqlite crashes)."""
    settings = tuning.with_kind_space(settings, root)  # tune.space: null is the data kind's default
    cfg = settings.tune
    if cfg.trials < 1:
        raise ConfigError("tune.trials: must be at least 1 to tune (0 turns tuning off)")
    url = tuning.resolve_storage_url(cfg.storage.get_secret_value(), root)
    name = tuning.study_name(cfg, data_version)
    started = time.perf_counter()
    tuning.prepare_study(cfg, name, url)
    run_on_cluster(settings, name, url, callbacks, cluster)
    study = optuna.load_study(study_name=name, storage=tuning.open_storage(url, cfg))
    return tuning.summarize(study, url, time.perf_counter() - started)
