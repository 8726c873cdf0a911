"""Process environment for modelmill entry points: state and telemetry kept inside the project."""

import os
import warnings
from pathlib import Path

# Third-party notices a user cannot act on (they would fill the run log on every compress step).
_QUIET = (
    ("torch.ao.quantization", "torch.ao.quantization is deprecated; PyTorch's int8 path still"),
    ("torch._utils", "TypedStorage is deprecated"),
    ("torch.ao.quantization.observer", "Please use quant_min and quant_max"),
    ("torch.ao.quantization.fx.convert", "must run observer before calling calculate_qparams"),
    ("mlflow.pyfunc.utils.data_validation", "Add type hints to the `predict` method"),
    ("mlflow.types.utils", "Hint: Inferred schema contains integer column(s)"),
)


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
    for module, _why in _QUIET:
        warnings.filterwarnings("ignore", category=UserWarning, module=module.replace(".", r"\."))
    return state
