"""The test-side view of a project's MLflow store, and MLflow's process-global state kept per test.

MLflow's registry resolves a `models:/m-...` source through `MlflowClient()` on the *global*
tracking URI (see the TODO in mlflow/store/model_registry/sqlalchemy_store.py), so a client for
one project must also point the globals at that project, or it reads the store of the test that
ran before it.
"""

import os
from pathlib import Path

_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def store_uri(project: Path) -> str:
    return f"sqlite:///{Path(project).resolve() / 'mlflow' / 'mlflow.db'}"


def point_globals_at(uri: str | None) -> None:
    """Set MLflow's global tracking and registry URIs without exporting them to the environment
    (mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI, which every later project would use)."""
    import mlflow

    saved = {k: os.environ.get(k) for k in _ENV}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def client_for(project: Path):
    """An MlflowClient on the project's store, with MLflow's globals on the same store."""
    from mlflow import MlflowClient

    uri = store_uri(project)
    point_globals_at(uri)
    return MlflowClient(uri, registry_uri=uri)
