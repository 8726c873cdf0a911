"""Compression end to end: retrain -> compress step, the standalone flow and CLI, the registry
model `<name>-compressed` loaded back through mlflow.pyfunc (real Prefect, MLflow, DVC)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from flows.compress import CompressParams, compress
from flows.retrain import RetrainParams, retrain
from modelmill.config import load_settings
from modelmill.data import fit_splits, load_dataset
from modelmill.errors import CompressionError
from modelmill.split import split_frame
from tests.support.mlflow_store import client_for

pytestmark = pytest.mark.usefixtures("prefect_harness")
MODEL, COMPRESSED = "digits-classifier", "digits-classifier-compressed"
BUDGET = 10.0


@pytest.fixture(scope="module")
def project(project_template, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("compress") / "project"
    shutil.copytree(project_template, target, symlinks=True)
    params = yaml.safe_load((target / "params.yaml").read_text())
    params["compress"]["enabled"] = True
    # a 2-epoch model is near ties everywhere: int8 may flip a few labels; the budget rule
    # itself is tested in tests/unit/test_compression.py, here the wiring
    params["compress"]["budget_points"] = BUDGET
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return target


@pytest.fixture(scope="module")
def retrained(project):
    return retrain(RetrainParams(project_dir=str(project)))


def test_retrain_compresses_the_new_champion(retrained, project):
    compression, client = retrained["compression"], client_for(project)
    assert retrained["registry"]["promoted"] and compression["registered"] is not None
    # by number: the standalone compress test (any order) registers a newer champion of the same source
    version = client.get_model_version(COMPRESSED, str(compression["registered"]["version"]))
    champion = client.get_model_version_by_alias(COMPRESSED, "champion")
    assert champion.tags["source_version"] == str(retrained["registry"]["version"])
    tags = version.tags
    assert tags["source_model"] == MODEL and tags["source_version"] == str(retrained["registry"]["version"])
    assert tags["variant"] == compression["registered"]["variant"] and tags["method"]
    chosen = next(r for r in compression["table"] if r["name"] == tags["variant"])
    base = next(r for r in compression["table"] if r["name"] == "float")
    assert int(tags["size_bytes"]) == chosen["size_bytes"] and "latency_ms_b64" in tags
    assert float(tags["accuracy"]) == pytest.approx(chosen["accuracy"], abs=1e-5)  # tagged as :.6g
    assert tags["data_version"] == retrained["data_version"]
    assert chosen["size_bytes"] < base["size_bytes"]
    assert (base["accuracy"] - chosen["accuracy"]) * 100 <= BUDGET + 1e-9


def test_variants_are_child_runs_with_a_table_and_plot(retrained, project):
    client, run_id = client_for(project), retrained["mlflow_run_id"]
    children = client.search_runs(
        [client.get_run(run_id).info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    table = retrained["compression"]["table"]
    assert sorted(c.data.tags["variant"] for c in children) == sorted(r["name"] for r in table)
    for child in children:
        assert {
            "accuracy",
            "macro_f1",
            "size_bytes",
            "parameters",
            "nonzero_parameters",
            "latency_ms_b1",
            "latency_ms_b64",
        } <= set(child.data.metrics)
    files = {a.path for a in client.list_artifacts(run_id, "compression")}
    assert {
        "compression/variants.json",
        "compression/size_vs_accuracy.png",
        "compression/summary.md",
    } <= files
    run = client.get_run(run_id)
    assert run.data.tags["compress_selected"] == retrained["compression"]["registered"]["variant"]
    assert any(f.endswith(".onnx") for f in files) or "compress_onnx_error" in run.data.tags


def test_compressed_champion_loads_with_pyfunc_and_predicts_the_measured_labels(
    retrained, project, monkeypatch
):
    import mlflow.pyfunc

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)  # set_registry_uri exports it; undone after
    mlflow.set_registry_uri(f"sqlite:///{project / 'mlflow' / 'mlflow.db'}")
    settings = load_settings(project / "params.yaml")
    dataset = load_dataset(project / "data")
    # the inputs the model was trained on: the kind's preprocessor fitted on the train split
    _, xy = fit_splits(split_frame(dataset.labeled(), settings.split), dataset.schema)
    x, y = xy["test"]
    pyfunc = mlflow.pyfunc.load_model(f"models:/{COMPRESSED}@champion")
    labels = np.asarray(pyfunc.predict(x.numpy())).argmax(1)
    client = client_for(project)
    version = client.get_model_version_by_alias(COMPRESSED, "champion")
    local = client.download_artifacts(version.run_id, "compression", str(project / "dl"))
    import torch

    from tasks.modelstore import LOADER_MODULE, load_verified

    assert pyfunc.metadata.flavors["python_function"]["loader_module"] == LOADER_MODULE
    verified = load_verified(client, COMPRESSED, version.version)
    assert verified.meta["recipe"]["quantization"] in (None, "dynamic_int8", "static_int8")
    with torch.inference_mode():
        assert np.array_equal(labels, verified.module(x).argmax(1).numpy())
    assert float(version.tags["accuracy"]) == pytest.approx(float((labels == y.numpy()).mean()), abs=1e-5)
    assert Path(local).exists()


def test_standalone_cli_compresses_name_at_champion(retrained, project):
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["compress", "--model", f"{MODEL}@champion", "-C", str(project)])
    assert result.exit_code == 0, result.output
    client = client_for(project)
    version = client.get_model_version_by_alias(COMPRESSED, "champion")
    assert str(version.version) == "2" and version.tags["source_version"] == str(
        retrained["registry"]["version"]
    )
    assert "registered" in result.output and COMPRESSED in result.output


def test_nothing_registered_when_no_variant_fits_the_budget(retrained, project):
    client = client_for(project)
    before = len(client.search_model_versions(f"name = '{COMPRESSED}'"))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["compress"].update(dynamic_int8=False, static_int8=False, prune=False, quantize_student=False)
    (project / "tight.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    summary = compress(CompressParams(project_dir=str(project), config="tight.yaml", budget_points=0.0))
    assert summary["registered"] is None
    assert "distilled: missed the budget" in summary["selection"]
    assert "nothing registered" in summary["markdown"]
    assert len(client.search_model_versions(f"name = '{COMPRESSED}'")) == before


def test_unknown_model_is_one_clear_error(project):
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["compress", "--model", "no-such-model@champion", "-C", str(project)])
    assert result.exit_code == 1
    assert "no-such-model" in result.output and "Traceback" not in result.output
    with pytest.raises(CompressionError):
        compress(CompressParams(project_dir=str(project), model="no-such-model/7"))
