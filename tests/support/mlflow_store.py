"""The test-side view of a project's MLflow store, and MLflow's process-global state kept per test.

MLflow's registry resolves a `models:/m-...` source through `MlflowClient()` on the *global*
tracking URI (see the TODO in mlflow/store/model_registry/sqlalchemy_store.py), so a client for
one project must also point the globals at that project, or it reads the store of the test that
ran before it.
"""

from pathlib import Path


def store_uri(project: Path) -> str:
    return f"sqlite:///{Path(project).resolve() / 'mlflow' / 'mlflow.db'}"


def point_globals_at(uri: str | None) -> None:
    """MLflow's globals on `uri` (None: unset), nothing exported (tasks.tracking.point_mlflow_at)."""
    from tasks.tracking import point_mlflow_at

    point_mlflow_at(uri)


def client_for(project: Path):
    """An MlflowClient on the project's store, with MLflow's globals on the same store."""
    from mlflow import MlflowClient

    uri = store_uri(project)
    point_globals_at(uri)
    return MlflowClient(uri, registry_uri=uri)
