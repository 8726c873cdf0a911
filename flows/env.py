"""Process environment for modelmill entry points: state and telemetry kept inside the project."""

import os
from pathlib import Path


def configure(project_dir: str | Path = ".") -> Path:
    """Set defaults (never overriding what the user set) before prefect/mlflow/dvc are imported."""
    state = Path(project_dir).resolve() / ".modelmill"
    (state / "prefect").mkdir(parents=True, exist_ok=True)
    defaults = {
        "PREFECT_HOME": str(state / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(state / "dvc-site-cache"),
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "GIT_PYTHON_REFRESH": "quiet",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    return state
