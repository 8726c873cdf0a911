"""Evaluation beyond accuracy through the retrain flow: every figure on the MLflow run and in the
card of the version it produced, read back through MlflowClient (real Prefect, MLflow, DVC)."""

import json
import shutil
from pathlib import Path

import pytest

from flows.retrain import RetrainParams, retrain

pytestmark = pytest.mark.usefixtures("prefect_harness")
MODEL = "digits-classifier"


@pytest.fixture(scope="module")
def project(project_template, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("evaluation-run") / "project"
    shutil.copytree(project_template, target, symlinks=True)
    return target


@pytest.fixture(scope="module")
def runs(project):
    """A first run (champion v1), then a second with another seed: paired against v1."""
    first = retrain(RetrainParams(project_dir=str(project)))
    second = retrain(RetrainParams(project_dir=str(project), seed=7))
    return first, second


@pytest.fixture(scope="module")
def client(project):
    from mlflow import MlflowClient

    uri = f"sqlite:///{project / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def card_of(client, version) -> dict:
    mv = client.get_model_version(MODEL, version)
    run_id, path = mv.tags["model_card_json"].removeprefix("runs:/").split("/", 1)
    assert run_id == mv.run_id
    return json.loads(Path(client.download_artifacts(run_id, path)).read_text())


def test_every_figure_is_on_the_run(runs, client):
    run = client.get_run(runs[1]["mlflow_run_id"])
    metrics = run.data.metrics
    for name in (
        "test_accuracy_ci_low",
        "test_macro_f1_ci_high",
        "calibration_ece",
        "calibration_ece_calibrated",
        "robust_fgsm_eps_0.1",
        "robust_pgd_eps_0.2",
        "robust_noise_sigma_0.1",
        "explain_completeness_error_median",
        "explain_deletion_auc_ratio",
        "explain_randomisation_spearman",
        "paired_macro_f1_difference_low",
        "paired_accuracy_difference",
    ):
        assert name in metrics, name
    files = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    expected = {"reliability.png", "attributions.png", "calibration.json", "evaluation.json"}
    assert {f"evaluation/{f}" for f in expected | {"paired_bootstrap.json"}} <= files
    assert {a.path for a in client.list_artifacts(run.info.run_id, "card")} == {
        "card/README.md",
        "card/model_card.json",
    }
    assert run.data.tags["gate_rule"] == "paired_bootstrap"


def test_the_card_of_the_version_holds_the_runs_figures(runs, client):
    second = runs[1]
    run = client.get_run(second["mlflow_run_id"])
    card = card_of(client, second["registry"]["version"])
    metrics = run.data.metrics
    assert card["metrics"]["accuracy"]["point"] == pytest.approx(metrics["test_accuracy"])
    assert card["metrics"]["accuracy"]["low"] == pytest.approx(metrics["test_accuracy_ci_low"])
    assert card["calibration"]["ece"] == pytest.approx(metrics["calibration_ece"])
    assert card["robustness"]["attacks"]["pgd"]["0.2"] == pytest.approx(metrics["robust_pgd_eps_0.2"])
    ratio = card["explanations"]["deletion_auc_ratio"]
    assert ratio == pytest.approx(metrics["explain_deletion_auc_ratio"])
    assert card["dataset"]["version"] == run.data.tags["data_version"]
    assert sum(card["dataset"]["class_balance"].values()) == 1797
    index = card["model-index"][0]["results"][0]
    assert index["metrics"][0]["value"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    mv = client.get_model_version(MODEL, second["registry"]["version"])
    assert "model-index:" in mv.description and "## Limitations" in mv.description  # the MLflow UI shows it
    assert float(mv.tags["calibration_temperature"]) == pytest.approx(card["calibration"]["temperature"])


def test_the_gate_compares_paired_and_the_summary_says_whether_it_is_significant(runs, client):
    first, second = runs
    paired = second["evaluation"]["paired"]["macro_f1"]
    diff = paired["difference"]
    assert diff["point"] == pytest.approx(
        second["evaluation"]["challenger"]["macro_f1"] - second["evaluation"]["champion"]["macro_f1"]
    )
    assert diff["low"] <= diff["point"] <= diff["high"]
    assert ("not significant" in second["gate_reason"]) is (not paired["significant"])
    assert "paired difference" in second["markdown"] and "model card: `runs:/" in second["markdown"]
    assert first["evaluation"]["paired"] is None and "no champion yet" in first["gate_reason"]
