"""The one MLflow adapter: tracking URI, experiment, runs owned by the flow, logging by run id.

MLflow's active run is per thread and Prefect runs tasks in a thread pool, so the flow
creates the run and every task logs through `Tracker` (an MlflowClient bound to a run id).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelmill.config import Settings

# what a registered model needs to load, at the versions installed here (the project's pins);
# listed, not inferred by MLflow, which would import and trace the loader to find them
MODEL_PIP_REQUIREMENTS = [
    f"{name}=={importlib.metadata.version(name)}"
    for name in ("torch", "numpy", "pandas", "scikit-learn", "pydantic", "pyyaml", "pyarrow")
]
SCHEMA_SAMPLE_ROWS = 256  # rows of a validated frame that give its MLflow dataset schema


def tracking_uri(settings: Settings, project_dir: str | Path) -> str:
    """MLFLOW_TRACKING_URI when set (a tracking server); else the configured store, made absolute."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or settings.tracking.uri.get_secret_value()
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = Path(project_dir, uri[len(prefix) :]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = prefix + str(path)
    return uri


_connections: dict[tuple[str, str], tuple] = {}  # (tracking URI, experiment) -> (client, experiment id)


def sqlite_schema_revision(path: Path) -> str | None:
    """The alembic revision a sqlite MLflow store records (None: no store, or not stamped)."""
    import sqlite3

    if not path.exists() or path.stat().st_size == 0:
        return None
    with contextlib.closing(sqlite3.connect(path)) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.DatabaseError:
            return None
    return row[0] if row else None


def mlflow_schema_head() -> str:
    """The newest schema revision of the installed MLflow (its alembic migrations folder)."""
    from alembic.script import ScriptDirectory

    import mlflow

    folder = Path(mlflow.__file__).parent / "store" / "db_migrations"  # no public API names it
    return str(ScriptDirectory(str(folder)).get_current_head())


def ensure_sqlite_store(uri: str) -> None:
    """Create or migrate a sqlite MLflow store on a copy, then rename it into place.

    MLflow creates and migrates the schema in place, and its migrations are not transactional
    (mlflow.store.db.utils._upgrade_db says so): a process killed in the middle leaves a store
    every later open fails on ("table ... already exists"), found by the fault-injection test.
    Here a kill leaves the old file (or none) and a temp file beside it. Servers: MLflow's own."""
    from modelmill.atomic import atomic_path
    from modelmill.tuning import schema_lock

    if not uri.startswith("sqlite:///") or ":memory:" in uri:
        return
    path = Path(uri[len("sqlite:///") :])
    head = mlflow_schema_head()
    if sqlite_schema_revision(path) == head:
        return
    with schema_lock(uri):  # one creator or migrator of this file at a time
        if sqlite_schema_revision(path) == head:
            return
        with atomic_path(path) as copy:
            if path.exists():
                _sqlite_copy(path, copy)
            _open_store(f"sqlite:///{copy}")


def _sqlite_copy(source: Path, target: Path) -> None:
    import sqlite3

    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):  # noqa: E501
        src.backup(dst)  # a consistent snapshot, the WAL's pages included


def _open_store(uri: str) -> None:
    """Opening a store creates or upgrades its schema (tracking and registry tables alike)."""
    from mlflow.exceptions import MlflowException

    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    try:
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    except MlflowException as exc:
        raise MlflowException(f"{uri}: cannot create or migrate the MLflow schema: {exc}") from exc


def point_mlflow_at(uri: str | None) -> None:
    """MLflow's global tracking and registry URIs (None: unset), without exporting them.

    set_*_uri also export MLFLOW_*_URI: the user's values (or none) are kept, otherwise the next
    project opened in this process (tests, a long-lived worker) would log into this store."""
    import mlflow

    user_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for key, value in user_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def connect(settings: Settings, project_dir: str | Path):
    """Point MLflow at the store and return (client, experiment_id), creating the experiment."""
    from mlflow import MlflowClient

    uri = tracking_uri(settings, project_dir)
    point_mlflow_at(uri)
    key = (uri, settings.tracking.experiment)
    if key in _connections:  # every task attaches to the run: one client and lookup per process
        return _connections[key]
    ensure_sqlite_store(uri)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(settings.tracking.experiment)
    if experiment is not None:
        _connections[key] = client, experiment.experiment_id
        return _connections[key]
    location = None
    if uri.startswith("sqlite:"):
        artifacts = Path(project_dir, settings.tracking.artifacts_dir).resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        location = artifacts.as_uri()
    # the UI then opens the experiment on its runs table (model training), not the GenAI overview
    kind = {"mlflow.experimentKind": "custom_model_development"}
    _connections[key] = (
        client,
        client.create_experiment(settings.tracking.experiment, artifact_location=location, tags=kind),
    )
    return _connections[key]


@dataclass
class Tracker:
    """Logging into one MLflow run, from any thread."""

    client: Any
    run_id: str

    @classmethod
    def start(
        cls,
        settings: Settings,
        project_dir: str | Path,
        run_name: str,
        tags: dict[str, str],
        parent_run_id: str | None = None,
    ) -> Tracker:
        from modelmill.processes import owner_tags

        client, experiment_id = connect(settings, project_dir)
        tags = {**owner_tags(), **tags}  # a later run marks this one KILLED if its process dies
        if parent_run_id:
            tags = {**tags, "mlflow.parentRunId": parent_run_id}
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        return cls(client, run.info.run_id)

    @classmethod
    def attach(cls, settings: Settings, project_dir: str | Path, run_id: str) -> Tracker:
        client, _ = connect(settings, project_dir)
        return cls(client, run_id)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[start : start + 500])

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, payload: Any, artifact_file: str) -> None:
        self.client.log_text(self.run_id, json.dumps(payload, indent=2, default=str), artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_dataset(self, frame, name: str, source: str, digest: str, context: str) -> None:
        """Record the dataset as an MLflow run input (name, DVC md5 as digest, schema, profile)."""
        import warnings

        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.models import infer_signature

        with warnings.catch_warnings():  # MLflow's hints on integer columns and local sources
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(frame, source=source, name=name, digest=digest[:36])
            # MLflow infers the schema by testing every cell for None/NaN in Python (5.6 s for
            # Fashion-MNIST's 55M cells). The frame passed validation (no nulls), so the
            # schema of its first rows is the schema of the whole; set the cached property.
            dataset.schema = infer_signature(frame.head(SCHEMA_SAMPLE_ROWS)).inputs
        # MlflowClient.log_inputs takes dataset entities and MLflow has no public converter;
        # the public mlflow.log_input needs the thread's active run, which a task does not have
        self.client.log_inputs(
            self.run_id,
            datasets=[
                DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])
            ],
        )

    def log_table(self, frame, artifact_file: str) -> None:
        """A table artifact (shown as a table in the MLflow UI's artifact and evaluation views)."""
        self.client.log_table(self.run_id, data=frame, artifact_file=artifact_file)

    @contextlib.contextmanager
    def system_metrics(self, interval: float = 10.0):
        """MLflow's own system metrics (CPU, memory, GPU when present) sampled into this run, every
        10 s as MLflow's default (each sample is a store write from a Python thread that competes
        with the training loop for the GIL and the 2 cores)."""
        # the public switch, start_run(log_system_metrics=True), needs the thread's active run
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(
            self.run_id,
            sampling_interval=interval,
            resume_logging=True,
            tracking_uri=self.client.tracking_uri,
        )
        # one sample at the start: the monitor's loop drops the sample it is waiting on when a
        # short training ends first, and would then log nothing
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()


def end_status(error: BaseException | None) -> str:
    """The MLflow run status for how a block ended: FINISHED, KILLED (interrupted, cancelled,
    terminated) or FAILED."""
    if error is None:
        return "FINISHED"
    from prefect.exceptions import CancelledRun, TerminationSignal

    if isinstance(error, KeyboardInterrupt | SystemExit | CancelledRun | TerminationSignal):
        return "KILLED"
    return "FAILED"


@contextlib.contextmanager
def tracked_run(
    settings: Settings,
    project_dir: str | Path,
    run_name: str,
    tags: dict[str, str],
    parent_run_id: str | None = None,
) -> Iterator[Tracker]:
    """The one place an MLflow run's life is managed: created on entry, ended FINISHED, FAILED
    or KILLED on exit (an `error` tag names what failed)."""
    tracker = Tracker.start(settings, project_dir, run_name, tags, parent_run_id=parent_run_id)
    try:
        yield tracker
    except BaseException as exc:
        with contextlib.suppress(Exception):  # the run's own error matters more than this tag
            tracker.set_tags({"error": f"{type(exc).__name__}: {exc}"[:5000]})
        tracker.finish(end_status(exc))
        raise
    tracker.finish("FINISHED")


def temp_dir(prefix: str = "modelmill-") -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=prefix)
