"""Shared fixtures: state kept in a temp folder, a temp project (git + DVC + data), Prefect harness.

Environment is set at import, before prefect/mlflow/dvc are imported by any test module.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
_STATE = Path(tempfile.mkdtemp(prefix="modelmill-tests-"))
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["DVC_SITE_CACHE_DIR"] = str(_STATE / "dvc-site-cache")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)
(_STATE / "prefect").mkdir(parents=True, exist_ok=True)

from flows.env import configure  # noqa: E402

configure(_STATE)

# Tiny but real: 2 epochs of a narrow CNN on the real digits data.
TEST_OVERRIDES = {
    "train": {"epochs": 2, "patience": 2, "batch_size": 64, "learning_rate": 0.005, "num_threads": 2},
    "model": {"width": 8, "hidden": 32},
    "tracking": {"experiment": "modelmill-tests"},
    # compression off in retrain (tests/flows/test_compress.py turns it on); tiny when it runs
    "compress": {
        "enabled": False,
        "sparsities": [0.8],
        "finetune_epochs": 1,
        "distill_epochs": 1,
        "student_width": 4,
        "student_hidden": 16,
        "calibration_batches": 2,
        "latency_repeats": 3,
        "latency_batch_sizes": [1, 64],
        "serving_batch_size": 64,
        # no time budget: the wiring tests see every variant of a 2-epoch model (the budget's
        # own tests set it: tests/unit/test_compression_budget.py, tests/flows/test_compress_budget.py)
        "max_train_ratio": None,
    },
}


def run(cmd: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, **kwargs)


def make_project(root: Path) -> Path:
    """A project folder like a fresh clone: git repo, DVC repo with a local remote, params.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in TEST_OVERRIDES.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text(".modelmill/\nmlflow/\n")
    run(["git", "init", "-q", "-b", "main"], root)
    run(["git", "config", "user.email", "tests@modelmill.local"], root)
    run(["git", "config", "user.name", "modelmill tests"], root)
    from dvc.repo import Repo

    Repo.init(str(root))
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    return root


@pytest.fixture(scope="session")
def project_template(tmp_path_factory) -> Path:
    """A bootstrapped project (data added to DVC, committed), copied by `project`."""
    from modelmill.config import load_settings
    from modelmill.data import bootstrap
    from tasks.data import version_data

    root = make_project(tmp_path_factory.mktemp("template") / "project")
    bootstrap(root / "data", "digits")
    version_data(root, load_settings(root / "params.yaml"), "bootstrap")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "bootstrap"], root)
    return root


@pytest.fixture(autouse=True)
def _mlflow_globals_per_test():
    """Each test starts and ends with MLflow's process-global URIs unset: a test that calls
    mlflow.set_tracking_uri (which also exports MLFLOW_TRACKING_URI) must not send the next
    test's runs, or its registry lookups, to its own store."""
    from tests.support.mlflow_store import point_globals_at

    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(key, None)
    point_globals_at(None)
    yield
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(key, None)
    point_globals_at(None)


@pytest.fixture
def project(project_template, tmp_path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(project_template, target, symlinks=True)
    return target


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def digits_model():
    """A narrow ConvNet trained 4 epochs on the real digits ([0, 1] pixels, modelmill's split),
    with its splits: {"model", "train", "val", "test", "classes"}. About 10 s."""
    from modelmill.config import ModelConfig, SplitConfig, TrainConfig
    from modelmill.data import bootstrap as bootstrap_data
    from modelmill.data import load_dataset, to_tensors
    from modelmill.models import build_model
    from modelmill.split import split_frame
    from modelmill.training import seed_everything, train

    data_dir = _STATE / "digits-fixture"
    if not (data_dir / "dataset.json").exists():
        bootstrap_data(data_dir, "digits")
    ds = load_dataset(data_dir)
    parts = split_frame(ds.labeled(), SplitConfig())
    xy = {k: to_tensors(v, ds.schema) for k, v in parts.items()}
    cfg = TrainConfig(epochs=4, patience=4, learning_rate=0.01, num_threads=1)  # 1: the box is shared
    seed_everything(cfg.seed)  # the initial weights must not depend on the order the tests ran in
    model = build_model(ds.schema.image_shape, len(ds.schema.classes), ModelConfig(width=8, hidden=32))
    result = train(model, xy["train"], xy["val"], cfg)
    return {"model": result.model, **xy, "classes": list(ds.schema.classes)}
