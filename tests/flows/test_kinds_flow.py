"""The retrain flow per data kind, on the built-in tabular sources (tiny configs, real stack)."""

import json
from pathlib import Path

import pytest

from flows.retrain import RetrainParams, retrain
from modelmill.data import Dataset, bootstrap, load_dataset, write_dataset
from tests.support.mlflow_store import client_for

pytestmark = pytest.mark.usefixtures("prefect_harness")


def use_source(project: Path, source: str, **settings) -> None:
    """The project's data/ rewritten with `source`, and dotted settings written to params.yaml."""
    import shutil

    import yaml

    shutil.rmtree(project / "data")
    bootstrap(project / "data", source)
    params = yaml.safe_load((project / "params.yaml").read_text())
    for dotted, value in {"data.source": source, "train.num_threads": 1, **settings}.items():
        section, key = dotted.split(".")
        params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_binary_table_trains_evaluates_with_roc_auc_and_its_champion_keeps_its_preprocessor(project):
    use_source(project, "breast_cancer", **{"compress.enabled": True, "registry.model_name": "cancer"})
    first = retrain(RetrainParams(project_dir=str(project), epochs=4))
    challenger = first["evaluation"]["challenger"]
    assert challenger["accuracy"] >= 0.9 and challenger["roc_auc"] >= 0.97 and 0 < challenger["threshold"] < 1
    assert first["registry"]["promoted"] and "dynamic_int8" in [
        r["name"] for r in first["compression"]["table"]
    ]
    client = client_for(project)
    run = client.get_run(first["mlflow_run_id"])
    assert run.data.metrics["test_pr_auc"] >= 0.95 and run.data.params["preprocess.kind"] == "tabular"
    state = json.loads(
        Path(client.download_artifacts(run.info.run_id, "preprocessing/preprocessor.json")).read_text()
    )
    assert state["kind"] == "tabular" and len(state["median"]) == 30
    # fewer labels: the train split's statistics change, the champion is scored with its own
    ds = load_dataset(project / "data")
    write_dataset(project / "data", Dataset(ds.schema, ds.items, ds.labels.iloc[40:].reset_index(drop=True)))
    second = retrain(RetrainParams(project_dir=str(project), epochs=4))
    champion = second["evaluation"]["champion"]
    assert champion is not None and champion["accuracy"] >= 0.9, second["evaluation"]


def test_multiclass_table_with_missing_values_and_categories(project, tmp_path):
    use_source(project, "penguins", **{"registry.model_name": "penguins"})
    summary = retrain(RetrainParams(project_dir=str(project), epochs=6))
    challenger = summary["evaluation"]["challenger"]
    assert challenger["accuracy"] >= 0.8 and "roc_auc" not in challenger
    client = client_for(project)
    run = client.get_run(summary["mlflow_run_id"])
    assert int(run.data.params["model.parameters"]) > 0
    # explanations in the table's own columns: a one-hot 'island' is one column, not three
    record = json.loads(
        Path(client.download_artifacts(run.info.run_id, "evaluation/evaluation.json")).read_text()
    )
    importance = record["explanations"]["column_importance"]
    columns = set(load_dataset(project / "data").schema.feature_columns)
    assert set(importance["ranked"]) == columns and set(importance["attribution"]) == columns
    top = importance["ranked"][0]
    assert importance["permutation_accuracy_drop"][top] > 0.05
    assert run.data.metrics[f"importance_permutation_{top}"] == importance["permutation_accuracy_drop"][top]
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/column_importance.png" in logged
    # the loop back to Label Studio: a <Table> of each row, scored by the champion
    from modelmill.config import load_settings
    from tasks.labels import export_uncertain_tasks

    settings = load_settings(project / "params.yaml")
    result = export_uncertain_tasks(project, settings, tmp_path / "out", count=5, include_labeled=True)
    tasks = json.loads(Path(result["tasks"]).read_text())
    assert len(tasks) == 5 and set(tasks[0]["data"]["row"]) >= {"island", "bill_length_mm", "sex"}
    assert tasks[0]["data"]["item_id"].startswith("penguins-")
    assert tasks[0]["predictions"][0]["result"][0]["value"]["choices"][0] in ("Adelie", "Chinstrap", "Gentoo")
    assert '<Table name="image" value="$row"/>' in Path(result["labeling_config"]).read_text()
