"""A temp MLflow registry (sqlite + local artifacts) holding one good champion in the safe format."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import mlflow
from mlflow import MlflowClient
from modelmill.config import ModelConfig, load_settings
from modelmill.models import build_model
from tasks.modelstore import log_model
from tasks.tracking import Tracker

NAME = "redteam-classifier"


@dataclass
class Registry:
    root: Path
    uri: str
    client: MlflowClient
    experiment_id: str
    good_version: str
    good_dir: Path  # a downloaded copy of the good version's artifacts
    x: torch.Tensor
    good_logits: torch.Tensor


def pin_uris(uri: str) -> None:
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    settings = load_settings(overrides={"tracking.uri": uri, "tracking.experiment": "redteam"})
    pin_uris(uri)
    tracker = Tracker.start(settings, root, "good", {})
    torch.manual_seed(0)
    model = build_model((8, 8), 10, ModelConfig(width=4, hidden=16)).eval()
    x = torch.rand(4, 1, 8, 8)
    model_uri, tags = log_model(tracker, model, x.numpy(), [str(i) for i in range(10)], root)
    version = mlflow.register_model(model_uri, NAME, tags=tags).version
    tracker.client.set_registered_model_alias(NAME, "champion", version)
    tracker.finish()
    good_dir = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(root / "good")))
    (good_dir / "registered_model_meta").unlink(missing_ok=True)
    experiment = tracker.client.get_experiment_by_name("redteam").experiment_id
    with torch.no_grad():
        logits = model(x)
    return Registry(root, uri, tracker.client, experiment, str(version), good_dir, x, logits)


def copy_of_good(registry: Registry, dest: Path) -> Path:
    shutil.copytree(registry.good_dir, dest)
    return dest
