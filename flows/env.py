"""Process environment for modelmill entry points: state and telemetry kept inside the project.

`project_env` is the one description of it: the CLI applies it as defaults before Prefect,
MLflow or DVC are imported, and the local stack (flows/stack.py) gives it to its servers.
"""

import os
import sys
import warnings
from pathlib import Path

STATE_DIR = ".modelmill"

# Third-party notices a user cannot act on (they would fill the run log on every compress step).
_QUIET = (
    ("torch.ao.quantization", "torch.ao.quantization is deprecated; PyTorch's int8 path still"),
    ("torch._utils", "TypedStorage is deprecated"),
    ("torch.ao.quantization.observer", "Please use quant_min and quant_max"),
    ("torch.ao.quantization.fx.convert", "must run observer before calling calculate_qparams"),
    ("mlflow.pyfunc.utils.data_validation", "Add type hints to the `predict` method"),
    ("mlflow.types.utils", "Hint: Inferred schema contains integer column(s)"),
)


def project_env(root: str | Path) -> dict[str, str]:
    """Offline, project-local settings for Prefect, MLflow, DVC and GE (state under .modelmill/)."""
    root = Path(root).resolve()
    state = root / STATE_DIR
    return {
        "MODELMILL_ROOT": str(root),
        "PREFECT_HOME": str(state / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # its tqdm bars for internal downloads (the champion, a split) are chatter around the stage lines
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(state / "dvc-site-cache"),
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "GIT_PYTHON_REFRESH": "quiet",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def configure(project_dir: str | Path = ".") -> Path:
    """Apply `project_env` as defaults (never overriding what the user set); call it before
    prefect/mlflow/dvc are imported. Returns the state folder."""
    env = project_env(project_dir)
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    for key, value in env.items():
        os.environ.setdefault(key, value)
    quiet_library_warnings()
    return Path(env["PREFECT_HOME"]).parent


def quiet_library_warnings() -> None:
    for module, _why in _QUIET:
        warnings.filterwarnings("ignore", category=UserWarning, module=module.replace(".", r"\."))


def project_dir_from_argv(argv: list[str] | None = None) -> str:
    """The `-C/--project-dir` of a command line, read before anything reads the project
    (the state folder, Prefect's home and the log files belong to that project)."""
    argv = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(argv):
        if arg in ("-C", "--project-dir") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--project-dir="):
            return arg.split("=", 1)[1]
        if arg.startswith("-C") and len(arg) > 2:
            return arg[2:]
    return os.environ.get("MODELMILL_PROJECT_DIR", ".")
