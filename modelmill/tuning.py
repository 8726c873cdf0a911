"""Hyperparameter tuning: the search space from params.yaml as suggest_* calls, a pruned
objective over the training loop, and a resumable Optuna study in an RDB storage."""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import pickle
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast

from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

import optuna
from modelmill.config import SearchParam, Settings, TuneConfig
from modelmill.data import ITEMS_FILE, LABELS_FILE, SCHEMA_FILE, fit_splits, load_dataset, read_schema
from modelmill.errors import ConfigError, TuningError
from modelmill.kinds import default_model, kind_of
from modelmill.secrets import mask_url, redact
from modelmill.split import split_frame
from modelmill.text_training import train_text
from modelmill.training import EpochMetrics, train

# An Optuna study callback, run in the worker after each trial: (study, frozen_trial) -> None.
# Adapters (MLflow) plug in here; it must be picklable when workers > 1 (spawned processes).
TrialCallback = Callable[[optuna.Study, FrozenTrial], None]
HISTORY_ATTR = "history"  # user attribute: per-epoch metrics of the trial, for trackers
DONE = (TrialState.COMPLETE, TrialState.PRUNED)

EMBEDDINGS_DIR = Path(".modelmill", "cache", "embeddings")  # the text kind's frozen embeddings


@dataclass
class TuneResult:
    study_name: str
    storage: str
    direction: str
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    states: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def best_overrides(self) -> dict[str, Any]:
        """Dotted configuration overrides for the final model (`{"train.learning_rate": ...}`)."""
        return dict(self.best_params)


# --- the search space -------------------------------------------------------------------


def suggest(trial: optuna.Trial, space: dict[str, SearchParam]) -> dict[str, Any]:
    """The one place the space becomes suggest_* calls; returns dotted config overrides."""
    overrides: dict[str, Any] = {}
    for key, p in space.items():
        # SearchParam's validator guarantees choices for categorical, low and high otherwise
        low, high = cast(float, p.low), cast(float, p.high)
        if p.type == "categorical":
            overrides[key] = trial.suggest_categorical(key, cast(list[str | int | float | bool], p.choices))
        elif p.type == "int":
            step = int(p.step) if p.step else 1
            overrides[key] = trial.suggest_int(key, int(low), int(high), step=step, log=p.log)
        else:
            overrides[key] = trial.suggest_float(key, low, high, step=p.step, log=p.log)
    return overrides


def _resolved_space(cfg: TuneConfig) -> dict[str, SearchParam]:
    """tune.space as with_kind_space filled it in (tuning always runs on such settings)."""
    return cast(dict[str, SearchParam], cfg.space)


def space_hash(cfg: TuneConfig) -> str:
    """Hash of what makes trial values comparable: the space, the metric, the epochs cap."""
    payload = {
        "space": {k: v.model_dump() for k, v in sorted(_resolved_space(cfg).items())},
        "metric": cfg.metric,
        "epochs": cfg.epochs,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]


def study_name(cfg: TuneConfig, data_version: str) -> str:
    """Same data version + same space -> same study (resume); anything new -> a fresh one."""
    version = "".join(c for c in data_version if c.isalnum())[:12] or "unversioned"
    return f"{cfg.study_prefix}-{version}-{space_hash(cfg)}"


def data_fingerprint(data_dir: str | Path) -> str:
    """A content hash of the dataset files, for runs without a DVC data version."""
    digest = hashlib.sha256()
    for name in (SCHEMA_FILE, ITEMS_FILE, LABELS_FILE):
        digest.update((Path(data_dir) / name).read_bytes())
    return digest.hexdigest()


def direction(cfg: TuneConfig) -> Literal["minimize", "maximize"]:
    return "minimize" if cfg.metric == "val_loss" else "maximize"


# --- storage, sampler, pruner -----------------------------------------------------------


def resolve_storage_url(url: str, root: str | Path = ".") -> str:
    """A relative sqlite path made absolute under `root` (its folder created); other URLs as is."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix + ":memory:":
        return url
    path = Path(url[len(prefix) :])
    path = path if path.is_absolute() else Path(root).resolve() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return prefix + str(path)


def open_storage(url: str, cfg: TuneConfig) -> RDBStorage:
    """RDB storage with heartbeats: a trial whose process died is failed and retried."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # several processes write one file: wait for the lock instead of failing at once
        engine_kwargs = {"connect_args": {"timeout": 120}}
    try:
        with warnings.catch_warnings():  # heartbeats are marked experimental; we rely on them
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=cfg.heartbeat_interval,
                grace_period=cfg.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=cfg.max_retry),
            )
    except (SQLAlchemyError, ImportError, ValueError) as exc:  # bad URL, missing driver, server down
        reason = redact(str(exc), [url])
        raise TuningError(f"tune.storage: cannot open Optuna storage '{mask_url(url)}' ({reason})") from None


_schema_locks_held = threading.local()  # lock files this thread holds


@contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Hold an exclusive lock beside a sqlite database (no-op for servers): concurrent schema
    creation or migration of one sqlite file crashes, so launchers take turns."""
    if not url.startswith("sqlite:///") or ":memory:" in url:
        yield
        return
    lock = Path(url[len("sqlite:///") :]).with_suffix(".lock")
    held: set[str] = _schema_locks_held.__dict__.setdefault("paths", set())
    if str(lock) in held:  # re-entrant in this thread (flock on a second descriptor would wait on itself)
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        held.add(str(lock))
        try:
            yield
        finally:
            held.discard(str(lock))
            fcntl.flock(handle, fcntl.LOCK_UN)


def create_schema(url: str, cfg: TuneConfig) -> None:
    """Create the tables once, before parallel workers start (concurrent migrations crash)."""
    with schema_lock(url):
        open_storage(url, cfg).engine.dispose()
        if url.startswith("sqlite:///") and ":memory:" not in url:
            with sqlite3.connect(url[len("sqlite:///") :], timeout=120) as conn:
                conn.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer


def make_sampler(cfg: TuneConfig, offset: int = 0) -> optuna.samplers.TPESampler:
    """Seeded TPE; `offset` (worker index, trials so far) keeps workers and resumes apart."""
    return optuna.samplers.TPESampler(
        seed=cfg.sampler_seed + offset, n_startup_trials=cfg.sampler_startup_trials
    )


def make_pruner(cfg: TuneConfig) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=cfg.pruner_startup_trials, n_warmup_steps=cfg.pruner_warmup_epochs
        )
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=cfg.epochs)
    return optuna.pruners.NopPruner()


# --- the study --------------------------------------------------------------------------


def prepare_study(cfg: TuneConfig, name: str, url: str) -> optuna.Study:
    """Create (or load) the study; a fresh one is warm-started from the latest related study."""
    create_schema(url, cfg)
    storage = open_storage(url, cfg)
    with schema_lock(url):  # two launchers at once: one creates and warm-starts, one loads
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction=direction(cfg),
            sampler=make_sampler(cfg),
            pruner=make_pruner(cfg),
            load_if_exists=True,
        )
        if cfg.warm_start and not study.trials:
            previous = _previous_best(storage, cfg, name)
            if previous is not None:
                study.enqueue_trial(previous, user_attrs={"warm_start": True}, skip_if_exists=True)
    return study


def _previous_best(storage: RDBStorage, cfg: TuneConfig, name: str) -> dict[str, Any] | None:
    """Best params of the newest other study with the same prefix and space (other data)."""
    suffix = f"-{space_hash(cfg)}"
    related = [
        s
        for s in optuna.get_all_study_summaries(storage, include_best_trial=True)
        if s.study_name != name
        and s.study_name.startswith(cfg.study_prefix + "-")
        and s.study_name.endswith(suffix)
        and s.best_trial is not None
    ]
    if not related:
        return None
    newest = max(related, key=lambda s: s.datetime_start or datetime.min)
    best = cast(FrozenTrial, newest.best_trial)  # filtered above
    return {k: v for k, v in best.params.items() if k in _resolved_space(cfg)}


def summarize(study: optuna.Study, url: str, seconds: float = 0.0) -> TuneResult:
    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    return TuneResult(
        study.study_name,
        url,
        study.direction.name.lower(),
        best.value if best else None,
        dict(best.params) if best else {},
        best.number if best else None,
        states,
        seconds,
    )


# --- the objective ----------------------------------------------------------------------


class Objective:
    """Train one model with the trial's parameters, reporting the metric every epoch."""

    def __init__(self, settings: Settings, splits: dict[str, Any] | None = None, watch_parent: bool = False):
        self.settings = settings
        self.splits = splits if splits is not None else load_splits(settings)
        self.parent_pid = os.getppid() if watch_parent else None

    def __call__(self, trial: optuna.Trial) -> float:
        cfg = self.settings.tune
        overrides = suggest(trial, _resolved_space(cfg))
        trial_settings = self.settings.override(
            {**overrides, "train.epochs": cfg.epochs, "train.num_threads": cfg.threads_per_worker}
        )
        schema = self.splits["schema"]
        model = default_model(schema, trial_settings.model, self.splits["preprocessor"])
        history: list[dict[str, float]] = []

        def on_epoch(m: EpochMetrics) -> None:
            history.append(asdict(m))
            value = getattr(m, cfg.metric)
            if not math.isfinite(value):
                raise FloatingPointError(f"{cfg.metric} is {value} at epoch {m.epoch} (diverged)")
            trial.report(value, m.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {m.epoch}")
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                # the launcher died (kill -9): stop; the trial goes stale and is retried later
                os._exit(1)

        try:
            if schema.kind == "text":  # frozen: the embeddings cached once, shared by every trial
                text, data = trial_settings.model.text, (self.splits["train"], self.splits["val"])
                result = train_text(model, *data, trial_settings.train, text, EMBEDDINGS_DIR, on_epoch)
            else:
                result = train(
                    model, self.splits["train"], self.splits["val"], trial_settings.train, on_epoch=on_epoch
                )
        finally:  # complete, pruned or failed: one write (per epoch, it grew with every epoch)
            trial.set_user_attr(HISTORY_ATTR, history)
        trial.set_user_attr("best_epoch", result.best_epoch)
        return float(getattr(result.best, cfg.metric))


def load_splits(settings: Settings) -> dict[str, Any]:
    """Train and validation tensors of the dataset in settings.data.dir (test stays unseen)."""
    dataset = load_dataset(settings.data.dir)
    parts = split_frame(dataset.labeled(), settings.split)
    preprocessor, xy = fit_splits({k: parts[k] for k in ("train", "val")}, dataset.schema)
    return {"schema": dataset.schema, "preprocessor": preprocessor, "train": xy["train"], "val": xy["val"]}


def with_kind_space(settings: Settings, root: str | Path = ".") -> Settings:
    """Settings whose tune.space is set: the configured one or the data kind's default."""
    if settings.tune.space is not None:
        return settings
    space = kind_of(read_schema(Path(root, settings.data.dir))).SEARCH_SPACE
    return settings.override({"tune.space": space})


# --- running trials: inline or in K worker processes ------------------------------------


class _StopWhenDone:
    """Stop this worker once the study's finished (complete + pruned) trials and the ones other
    workers are running make `trials`: no worker starts a trial past the total."""

    def __init__(self, trials: int):
        self.trials = trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        failed = sum(t.state == TrialState.FAIL for t in study.get_trials(deepcopy=False))
        if started_trials(study) >= self.trials or failed > self.trials:
            study.stop()


def started_trials(study: optuna.Study) -> int:
    """Finished trials plus the ones running now (in other workers: this one's has finished).

    A trial of a killed process stays RUNNING until its heartbeat is past the grace period:
    fail those first (Optuna's own check, which also enqueues their retry), so that they
    neither count nor stop this worker before their retry ran. Two workers checking in the
    same instant can still each start one: at most K-1 over.
    """
    with warnings.catch_warnings():  # marked experimental, like the heartbeats it serves
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return sum(t.state in (*DONE, TrialState.RUNNING) for t in study.get_trials(deepcopy=False))


def run_worker(
    settings_json: str,
    name: str,
    url: str,
    worker: int,
    callbacks: Sequence[TrialCallback] = (),
    splits: dict[str, Any] | None = None,
    spawned: bool = False,
) -> None:
    """One worker: load the study and run trials until it has `tune.trials` finished ones."""
    settings = Settings.model_validate_json(settings_json)
    cfg = settings.tune
    storage = open_storage(url, cfg)
    seen = len(optuna.load_study(study_name=name, storage=storage).trials)
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(cfg, 1009 * worker + seen),
        pruner=make_pruner(cfg),
    )
    if started_trials(study) >= cfg.trials:
        return
    study.optimize(
        Objective(settings, splits, watch_parent=spawned),
        timeout=cfg.timeout,
        callbacks=[*callbacks, _StopWhenDone(cfg.trials)],
        catch=(FloatingPointError, RuntimeError, ValueError),
    )


def tune(
    settings: Settings, data_version: str, callbacks: Sequence[TrialCallback] = (), root: str | Path = "."
) -> TuneResult:
    """Run (or resume) the study for this data version and search space; return the best."""
    settings = with_kind_space(settings, root)
    cfg = settings.tune
    if cfg.trials < 1:
        raise ConfigError("tune.trials: must be at least 1 to tune (0 turns tuning off)")
    url = resolve_storage_url(cfg.storage.get_secret_value(), root)
    name = study_name(cfg, data_version)
    started = time.perf_counter()
    prepare_study(cfg, name, url)
    payload = settings.private_json()  # the workers need the storage password
    if cfg.workers == 1:
        run_worker(payload, name, url, 0, callbacks)
    else:
        _run_processes(payload, name, url, cfg.workers, callbacks)
    study = optuna.load_study(study_name=name, storage=open_storage(url, cfg))
    return summarize(study, url, time.perf_counter() - started)


def _run_processes(
    payload: str, name: str, url: str, workers: int, callbacks: Sequence[TrialCallback]
) -> None:
    """K workers: K-1 processes (`python -m modelmill.tuning`, each with its own torch threads)
    and this process, whose imports and data are warm: it runs trials while they start up."""
    with tempfile.TemporaryDirectory(prefix="modelmill-tune-") as tmp:
        # the launcher's own callbacks for its own children, in a private (0700) temp folder;
        # the child unpickles only bytes whose sha256 the launcher put on its command line
        spec = Path(tmp) / "worker.pickle"
        blob = pickle.dumps((payload, name, url, tuple(callbacks)))
        spec.write_bytes(blob)
        digest = hashlib.sha256(blob).hexdigest()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        procs = [
            subprocess.Popen([sys.executable, "-m", "modelmill.tuning", str(spec), str(i), digest], env=env)
            for i in range(1, workers)
        ]
        try:
            run_worker(payload, name, url, 0, callbacks)
        except BaseException:
            for proc in procs:  # interrupted: the study keeps what finished; resume later
                proc.terminate()
            raise
        finally:
            codes = [proc.wait() for proc in procs]
    failed = [
        f"worker {i} (pid {p.pid}, exit {c})"
        for i, (p, c) in enumerate(zip(procs, codes, strict=True), 1)
        if c
    ]
    if failed:
        raise TuningError(
            f"tuning {', '.join(failed)} failed; the study '{name}' keeps its "
            "finished trials (run the same command again to resume)"
        )


def _worker_main(spec_path: str, worker: int, digest: str) -> None:
    blob = Path(spec_path).read_bytes()
    if hashlib.sha256(blob).hexdigest() != digest:  # written by someone other than our launcher
        raise TuningError(f"{spec_path}: worker spec does not match its launcher's digest; not loaded")
    payload, name, url, callbacks = pickle.loads(blob)  # noqa: S301 - verified bytes of our launcher
    run_worker(payload, name, url, worker, callbacks, spawned=True)


if __name__ == "__main__":
    _worker_main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
