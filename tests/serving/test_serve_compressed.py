"""`modelmill serve --variant compressed`: a digits champion compressed in retrain (static int8,
exported to ONNX inside its verified model folder) served through ONNX Runtime, answering like
the float champion on its stored input example."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from modelmill.scoring import STORED_ONNX, TORCH
from tasks.aliases import CHAMPION, alias_target
from tasks.modelstore import MANIFEST_TAG
from tests.serving.conftest import MODEL, digits_rows, start_server, stop_server
from tests.support.mlflow_store import client_for

COMPRESSED = f"{MODEL}-compressed"


@pytest.fixture(scope="module")
def compressed_project(project_template, tmp_path_factory, prefect_harness) -> Path:
    """A champion and its compressed champion: static int8 only (the variant ONNX can carry)."""
    from flows.retrain import RetrainParams, retrain

    root = tmp_path_factory.mktemp("serving-compressed") / "project"
    shutil.copytree(project_template, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["serve"]["poll_seconds"] = 0.5
    params["drift"]["enabled"] = False
    params["compress"].update(
        enabled=True, dynamic_int8=False, prune=False, distill=False, static_int8=True, onnx=True,
        budget_points=10.0,
    )  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    summary = retrain(RetrainParams(project_dir=str(root)))
    assert summary["compression"]["registered"] is not None, summary["compression"]["selection"]
    return root


@pytest.fixture(scope="module")
def server(compressed_project):
    running = start_server(compressed_project, "--variant", "compressed")
    yield running
    stop_server(running)


def test_the_onnx_export_is_inside_the_verified_folder(compressed_project):
    client = client_for(compressed_project)
    version = alias_target(client, COMPRESSED, CHAMPION)
    files = json.loads(client.get_model_version(COMPRESSED, version).tags[MANIFEST_TAG])["files"]
    assert any(name.endswith("/model.onnx") for name in files), sorted(files)


def test_the_compressed_champion_is_served_through_onnxruntime(server, compressed_project, tmp_path):
    from modelmill.scoring import scorer_of
    from tasks.modelstore import load_verified

    client = client_for(compressed_project)
    version = alias_target(client, COMPRESSED, CHAMPION)
    info = server.get("/version").json()
    assert info["model"] == COMPRESSED and info["version"] == version and info["runtime"] == STORED_ONNX
    example = example_inputs_of(client, version, tmp_path)
    answer = server.post("/invocations", {"inputs": example})
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Model-Version"] == version
    served = np.asarray(answer.json()["predictions"])
    float_scorer = scorer_of(load_verified(client, MODEL, alias_target(client, MODEL, CHAMPION)))
    float_logits = float_scorer.logits(np.asarray(example, dtype=np.float32))
    assert served.shape == float_logits.shape
    assert (served.argmax(1) == float_logits.argmax(1)).all()  # the same answers as the float model
    rows = digits_rows(compressed_project, 5)
    friendly = server.post("/predict", {"inputs": rows})
    assert friendly.headers["X-Model-Version"] == version
    if load_verified(client, COMPRESSED, version).meta.get("preprocessing") is None:
        # a variant saved without its source's preprocessor (before feat/compress2's source_meta)
        assert friendly.status_code == 400 and "stores no preprocessing" in friendly.json()["message"]
        return
    assert friendly.status_code == 200, friendly.text
    assert friendly.json()["version"] == version
    labels = [p["label"] for p in friendly.json()["predictions"]]
    assert labels == [
        a["label"] for a in float_scorer.answers(float_scorer.logits(float_scorer.raw_input(rows)))
    ]


def test_a_variant_without_onnx_is_served_by_torch_and_says_so(compressed_project):
    from modelmill.modelfile import LoadedModel, Manifest
    from modelmill.scoring import scorer_of
    from tasks.modelstore import load_verified

    client = client_for(compressed_project)
    loaded = load_verified(client, COMPRESSED, alias_target(client, COMPRESSED, CHAMPION))
    files = {k: v for k, v in loaded.manifest.files.items() if k != "model.onnx"}
    stripped = LoadedModel(loaded.module, loaded.meta, loaded.folder, Manifest(files))
    assert scorer_of(stripped).runtime == TORCH  # int8 modules are not exported at load either


def example_inputs_of(client, version: str, tmp: Path) -> list:
    import mlflow.artifacts

    source = client.get_model_version(COMPRESSED, version).source
    local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp))
    return json.loads(Path(local, "input_example.json").read_text())
