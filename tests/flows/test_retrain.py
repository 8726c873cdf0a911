"""The retrain flow end to end on the real digits data, real Prefect, MLflow (sqlite) and DVC."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from flows.retrain import RetrainParams, retrain
from modelmill.errors import ValidationFailed
from tests.support.mlflow_store import client_for

pytestmark = pytest.mark.usefixtures("prefect_harness")
MODEL = "digits-classifier"


@pytest.fixture(scope="module")
def shared_project(project_template, tmp_path_factory) -> Path:
    """One project for the whole module: runs build on each other (champion, then challengers)."""
    target = tmp_path_factory.mktemp("retrain") / "project"
    shutil.copytree(project_template, target, symlinks=True)
    return target


@pytest.fixture(scope="module")
def first_run(shared_project):
    return retrain(RetrainParams(project_dir=str(shared_project)))


def data_dvc_md5(project: Path) -> str:
    return yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]


def test_first_run_registers_and_promotes(first_run, shared_project):
    client = client_for(shared_project)
    run = client.get_run(first_run["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    # resolved configuration as params, lineage as tags
    assert run.data.params["train.epochs"] == "2" and run.data.params["model.width"] == "8"
    assert run.data.tags["data_version"] == data_dvc_md5(shared_project) == first_run["data_version"]
    assert len(run.data.tags["git_commit"]) >= 40
    assert (
        run.data.tags["prefect_flow_run_id"] and run.info.run_name == run.data.tags["prefect_flow_run_name"]
    )
    # metrics: per epoch history and test metrics
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2
    # 2 epochs of a narrow CNN, seeded: 0.837 here; a broken pipeline lands near 0.1 (chance)
    assert run.data.metrics["test_accuracy"] > 0.8
    assert {"test_macro_f1", "test_macro_precision", "test_f1_class_7"} <= set(run.data.metrics)
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics)  # MLflow system metrics
    # artifacts: validation report + Data Docs, confusion matrix, summary
    files = {a.path for a in client.list_artifacts(run.info.run_id, "validation")}
    assert {"validation/result.json", "validation/summary.txt", "validation/data_docs"} <= files
    assert "evaluation/confusion_challenger.png" in {
        a.path for a in client.list_artifacts(run.info.run_id, "evaluation")
    }
    # the dataset as an MLflow input, digest = the DVC md5
    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest == first_run["data_version"][:36]
    # its schema (inferred from a sample of the validated rows) names every column, required
    columns = json.loads(inputs[0].dataset.schema)["mlflow_colspec"]
    assert [c["name"] for c in columns][:3] == ["item_id", "px0", "px1"] and len(columns) == 2 + 64
    assert all(c.get("required", True) for c in columns)
    assert json.loads(inputs[0].dataset.profile)["num_rows"] == 1797
    # registry: version 1 became champion (later tests of the module may move the alias)
    version = client.get_model_version(MODEL, "1")
    assert first_run["registry"]["version"] == "1" and first_run["registry"]["champion_version"] == "1"
    assert version.run_id == run.info.run_id
    assert version.tags["data_version"] == first_run["data_version"]
    assert version.tags["prefect_flow_run_id"] == run.data.tags["prefect_flow_run_id"]
    assert "git_commit" in version.tags
    assert first_run["registry"]["promoted"] is True
    assert "promoted" in first_run["markdown"] and first_run["data_version"] in first_run["markdown"]


def test_summary_is_a_prefect_markdown_artifact(first_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["retrain-summary"]))
        )
    assert any(first_run["mlflow_run_id"] in (a.data or "") for a in artifacts)


def test_registered_model_loads_back_and_predicts(first_run, shared_project):
    """Users load the champion as a pyfunc (our loader, logits); modelmill's verified load agrees."""
    import mlflow.pyfunc
    import torch

    from tasks.modelstore import LOADER_MODULE, load_verified

    uri = f"sqlite:///{shared_project / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    assert pyfunc.metadata.flavors.keys() == {"python_function"}
    assert pyfunc.metadata.flavors["python_function"]["loader_module"] == LOADER_MODULE
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    logits = pyfunc.predict(x)
    assert logits.shape == (2, 10)
    loaded = load_verified(client_for(shared_project), MODEL, "1")
    assert type(loaded.module).__name__ == "ConvNet" and loaded.classes == [str(i) for i in range(10)]
    assert np.allclose(loaded.module(torch.from_numpy(x)).detach().numpy(), logits, atol=1e-6)


def test_no_artifact_of_the_run_or_the_registry_is_a_pickle(first_run, shared_project):
    """Every file in the MLflow artifact store (runs, logged models, registered versions) and in
    Prefect's result storage: no pickle, no torch zip, none wrapped in gzip/zlib."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    from modelmill.artifact_scan import scan

    artifacts = shared_project / "mlflow" / "artifacts"
    files = [p for p in artifacts.rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" for p in files) and any(p.name == "MLmodel" for p in files)
    results = Path(PREFECT_LOCAL_STORAGE_PATH.value())  # persisted task results, when any
    assert scan(artifacts) == [] and (not results.exists() or scan(results) == [])


def champion_of(client) -> str:
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def versions_of(client) -> set[str]:
    return {str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")}


def test_worse_challenger_does_not_take_champion(first_run, shared_project):
    client = client_for(shared_project)
    champion, before = champion_of(client), versions_of(client)
    worse = retrain(RetrainParams(project_dir=str(shared_project), epochs=1, learning_rate=1e-6))
    new = str(max(int(v) for v in before) + 1)
    assert worse["registry"] == {
        **worse["registry"],
        "version": new,
        "promoted": False,
        "champion_version": champion,
    }
    assert champion_of(client) == champion
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == new
    assert "champion kept" in worse["gate_reason"]
    assert worse["evaluation"]["champion_version"] == champion
    assert "not promoted" in worse["markdown"]


def test_fail_on_reject_fails_the_flow_after_registering_the_challenger(first_run, shared_project):
    from modelmill.errors import GateRejected

    client = client_for(shared_project)
    champion, before = champion_of(client), versions_of(client)
    params = yaml.safe_load((shared_project / "params.yaml").read_text())
    params["gate"]["fail_on_reject"] = True
    (shared_project / "strict.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(GateRejected, match="champion kept"):
        retrain(
            RetrainParams(project_dir=str(shared_project), config="strict.yaml", epochs=1, learning_rate=1e-6)
        )
    assert champion_of(client) == champion
    assert len(versions_of(client)) == len(before) + 1  # the challenger is registered
    latest = client.search_runs(
        [client.get_experiment_by_name("modelmill-tests").experiment_id],
        "tags.flow = 'retrain'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    assert latest.info.status == "FAILED" and latest.data.tags["gate"] == "reject"


def task_run_names(flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return [run.name for run in runs]


def prefect_flow_run_of(shared_project: Path, mlflow_run_id: str) -> str:
    return client_for(shared_project).get_run(mlflow_run_id).data.tags["prefect_flow_run_id"]


def test_each_stage_is_its_own_task_run_in_the_prefect_graph(first_run, shared_project):
    names = {
        name.rsplit("-", 1)[0]
        for name in task_run_names(prefect_flow_run_of(shared_project, first_run["mlflow_run_id"]))
    }
    stages = {"sync-data", "find-reusable-run", "validate", "split", "train", "evaluate", "gate", "register",
              "summary"}  # fmt: skip
    assert stages <= names, stages - names


def test_unchanged_run_reuses_the_last_one_and_says_so_in_the_graph(first_run, shared_project):
    again = retrain(RetrainParams(project_dir=str(shared_project)))
    client = client_for(shared_project)
    reused = client.get_run(again["reused_run_id"])  # the first run, or a forced rerun of it
    fingerprint = client.get_run(first_run["mlflow_run_id"]).data.tags["fingerprint"]
    assert again["skipped"] == "unchanged" and reused.data.tags["fingerprint"] == fingerprint
    assert reused.data.tags["retrained"] == "true" and reused.info.status == "FINISHED"
    assert "reused run " + again["reused_run_id"] in again["markdown"]
    names = task_run_names(prefect_flow_run_of(shared_project, again["mlflow_run_id"]))
    assert f"reuse run {again['reused_run_id']}" in names
    assert not any(n.startswith(("train", "evaluate", "register")) for n in names)
    skipped = client_for(shared_project).get_run(again["mlflow_run_id"])
    assert skipped.data.tags["skipped"] == "unchanged" and "test_accuracy" not in skipped.data.metrics


def test_skip_unchanged_off_retrains(first_run, shared_project):
    params = yaml.safe_load((shared_project / "params.yaml").read_text())
    params["ops"]["skip_unchanged"] = False
    (shared_project / "always.yaml").write_text(yaml.safe_dump(params))
    again = retrain(RetrainParams(project_dir=str(shared_project), config="always.yaml"))
    assert "skipped" not in again and again["mlflow_run_id"] != first_run["mlflow_run_id"]
    assert again["registry"]["version"] != first_run["registry"]["version"]


def test_same_inputs_give_the_same_model(first_run, shared_project):
    """Seeded before the weights are initialised: a forced rerun scores exactly the same."""
    again = retrain(RetrainParams(project_dir=str(shared_project), force=True))
    assert again["mlflow_run_id"] != first_run["mlflow_run_id"]
    assert again["evaluation"]["challenger"] == first_run["evaluation"]["challenger"]


def corrupt(data_dir: Path) -> None:
    items = pd.read_parquet(data_dir / "items.parquet")
    labels = pd.read_parquet(data_dir / "labels.parquet")
    items["px3"] = items["px3"].astype(float)
    items.loc[4, "px3"] = np.nan  # NaN pixel
    items.loc[8, "px9"] = 40  # out of range
    items.loc[15, "item_id"] = items.loc[16, "item_id"]  # duplicate id
    labels.loc[23, "label"] = "eleven"  # unknown label
    items.to_parquet(data_dir / "items.parquet", index=False)
    labels.to_parquet(data_dir / "labels.parquet", index=False)


def test_corrupted_data_fails_validation_and_registers_nothing(first_run, shared_project, tmp_path):
    shared_project = Path(shutil.copytree(shared_project, tmp_path / "project", symlinks=True))
    client = client_for(shared_project)
    before = {v.version for v in client.search_model_versions(f"name='{MODEL}'")}
    champion = client.get_model_version_by_alias(MODEL, "champion").version
    corrupt(shared_project / "data")
    with pytest.raises(ValidationFailed) as err:
        retrain(RetrainParams(project_dir=str(shared_project)))
    message = str(err.value)
    for needle in ("digits-0004", "digits-0008", "digits-0016", "digits-0023", "eleven"):
        assert needle in message
    assert {v.version for v in client.search_model_versions(f"name='{MODEL}'")} == before
    assert client.get_model_version_by_alias(MODEL, "champion").version == champion
    failed = client.search_runs(
        [client.get_experiment_by_name("modelmill-tests").experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    assert failed.info.status == "FAILED" and failed.data.tags["validation"] == "failed"
    assert "validation/result.json" in {
        a.path for a in client.list_artifacts(failed.info.run_id, "validation")
    }


def test_flow_parameters_are_a_typed_form():
    """The Prefect UI builds its Custom run form from this schema."""
    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(retrain.fn).model_dump()
    fields = schema["definitions"]["RetrainParams"]["properties"]
    assert fields["epochs"]["anyOf"][0]["type"] == "integer"
    assert fields["force"]["type"] == "boolean"
    assert "override train.learning_rate" in fields["learning_rate"]["description"]
