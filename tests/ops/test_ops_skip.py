"""Skip-if-unchanged: an unchanged run reuses the last one; a changed param, data or --force retrains."""

from __future__ import annotations

import pytest

from tests.ops import prefect_api as api

pytestmark = [pytest.mark.slow]


def _mlflow_run(stack, run_id: str) -> dict:
    run = api.mlflow_get(stack.mlflow_url, "runs/get", run_id=run_id)["run"]
    return {
        "tags": {t["key"]: t["value"] for t in run["data"]["tags"]},
        "metrics": {m["key"]: m["value"] for m in run["data"].get("metrics", [])},
    }


def test_unchanged_run_reuses_the_last_one_and_changes_retrain(ops_project, in_stack, quick_run_result):
    """The baseline is the worker's Quick run: the cache is shared by worker and in-process runs."""
    from flows.retrain import RetrainParams, retrain
    from modelmill.data import Dataset, load_dataset, write_dataset

    [first] = api.mlflow_runs(in_stack.mlflow_url, f"tags.prefect_flow_run_id = '{quick_run_result['id']}'")
    first_run_id = first["info"]["run_id"]
    base = RetrainParams(project_dir=str(ops_project))

    again = retrain(base)
    assert again["skipped"] == "unchanged" and again["reused_run_id"] == first_run_id
    skipped = _mlflow_run(in_stack, again["mlflow_run_id"])
    assert skipped["tags"]["skipped"] == "unchanged" and skipped["tags"]["reused_run_id"] == first_run_id
    assert "test_accuracy" not in skipped["metrics"]  # nothing was trained or evaluated

    changed_param = retrain(base.model_copy(update={"seed": 12}))
    assert (
        "skipped" not in changed_param
        and changed_param["registry"]["version"] != again["registry"]["version"]
    )

    forced = retrain(base.model_copy(update={"force": True}))
    assert "skipped" not in forced and forced["mlflow_run_id"] != first_run_id

    data_dir = ops_project / "data"
    dataset = load_dataset(data_dir)
    write_dataset(data_dir, Dataset(dataset.schema, dataset.items, dataset.labels.iloc[:-10]))
    new_data = retrain(base)
    assert "skipped" not in new_data and new_data["data_version"] != again["data_version"]
