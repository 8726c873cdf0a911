"""The compress stage's time budget in `retrain` (real Prefect, MLflow, DVC): taken from the
train_seconds the training run recorded, the variants it cannot afford listed, never silently."""

import pytest
import yaml

from flows.retrain import RetrainParams, retrain
from tests.support.mlflow_store import client_for

pytestmark = pytest.mark.usefixtures("prefect_harness")
RATIO = 1e-6  # a budget of microseconds: only the float model, always measured, fits


def test_a_spent_budget_skips_every_variant_and_says_so(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["compress"].update(enabled=True, max_train_ratio=RATIO, budget_points=10.0)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    summary = retrain(RetrainParams(project_dir=str(project)))
    compression = summary["compression"]
    assert summary["registry"]["promoted"] and compression["registered"] is None
    assert [row["name"] for row in compression["table"]] == ["float"]
    skipped = compression["not_applicable"]
    assert {"dynamic_int8", "static_int8", "pruned_80", "distilled"} <= set(skipped)
    assert all(why.startswith("skipped: budget (") for why in skipped.values())
    assert "no variant was built within the time budget" in compression["markdown"]
    assert "- pruned_80: skipped: budget (" in compression["markdown"]
    assert "distilled skipped: budget (" in summary["compression_note"]
    run = client_for(project).get_run(summary["mlflow_run_id"])
    budget = RATIO * run.data.metrics["train_seconds"]  # read back from the run that trained it
    assert f"time budget {budget:.1f} s" in compression["markdown"]
    assert run.data.metrics["compress_seconds"] > 0
