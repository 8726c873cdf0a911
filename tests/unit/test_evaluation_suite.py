"""The evaluation suite on a trained digits model: every figure written, timings, card sections."""

import json

import pytest

from modelmill.config import EvaluationConfig
from modelmill.evaluation.calibration import load_temperature
from modelmill.evaluation.suite import run_suite


@pytest.fixture(scope="module")
def suite(digits_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    d = digits_model
    return run_suite(
        d["model"], d["val"], d["test"], d["train"][0], d["classes"], EvaluationConfig(), out
    ), out


def test_every_figure_is_written(suite):
    result, out = suite
    assert set(result.files) == {
        "reliability",
        "temperature",
        "attributions",
        "evaluation",
    }
    assert all(p.exists() and p.parent == out for p in result.files.values())
    record = json.loads((out / "evaluation.json").read_text())
    assert record["intervals"]["accuracy"]["point"] == pytest.approx(result.intervals["accuracy"].point)
    assert {c["name"] for c in record["explanations"]["checks"]} == {
        "ig_completeness",
        "deletion",
        "model_randomisation",
    }
    assert record["robustness"]["strongest"] == result.robustness.strongest()
    assert load_temperature(out) == result.temperature


def test_metrics_are_flat_numbers(suite):
    result, _ = suite
    metrics = result.metrics()
    assert (
        metrics["test_accuracy_ci_low"]
        < result.intervals["accuracy"].point
        < metrics["test_accuracy_ci_high"]
    )
    assert 0 <= metrics["calibration_ece"] < 0.2 and "calibration_ece_calibrated" in metrics
    assert "robust_pgd_eps_0.1" in metrics and "explain_deletion_auc_ratio" in metrics
    assert all(isinstance(v, float) for v in metrics.values())
    assert set(result.seconds) == {"intervals", "calibration", "robustness", "explanations"}
    assert result.failed_checks() == []


def test_parts_can_be_turned_off(digits_model, tmp_path):
    cfg = EvaluationConfig.model_validate(
        {
            "robustness": {"enabled": False},
            "explanations": {"enabled": False},
            "calibration": {"temperature_scaling": False},
        }
    )
    d = digits_model
    result = run_suite(d["model"], d["val"], d["test"], d["train"][0], d["classes"], cfg, tmp_path)
    assert result.robustness is None and result.explanations is None and result.temperature is None
    assert set(result.files) == {"reliability", "evaluation"}
