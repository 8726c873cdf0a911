"""ECE, the reliability diagram and temperature scaling (fitted on val, stored as JSON)."""

import json

import numpy as np
import pytest
import torch

from modelmill.errors import EvaluationError
from modelmill.evaluation.calibration import (
    expected_calibration_error,
    fit_temperature,
    load_temperature,
    plot_reliability_diagram,
    predict_logits,
    reliability_bins,
    save_temperature,
)


def test_ece_by_hand():
    # two bins of two items: confidence 0.9 with 1/2 right, confidence 0.6 with 2/2 right
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    assert expected_calibration_error(probs, y, bins=10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    bins = reliability_bins(probs, y, bins=10)
    assert sum(bins.count) == 4 and bins.count[8] == 2 and bins.count[5] == 2


def test_perfectly_calibrated_synthetic_data_has_small_ece():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 20_000)
    y = (rng.random(20_000) > conf).astype(int)  # class 0 right with probability conf
    probs = np.stack([conf, 1 - conf], 1)
    assert expected_calibration_error(probs, y) < 0.02
    overconfident = np.stack([np.full_like(conf, 0.99), np.full_like(conf, 0.01)], 1)
    assert expected_calibration_error(overconfident, y) > 0.2


def test_reliability_diagram_png(tmp_path):
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    path = plot_reliability_diagram(probs, [0, 1, 1], tmp_path / "reliability.png", bins=5, calibrated=probs)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_temperature_recovers_a_known_scale():
    """Logits drawn calibrated, then multiplied by 3: the fitted temperature is close to 3."""
    gen = torch.Generator().manual_seed(0)
    true_logits = torch.randn(2000, 10, generator=gen) * 2
    y = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=gen).squeeze(1)
    fitted = fit_temperature(true_logits * 3, y)
    assert fitted.temperature == pytest.approx(3.0, rel=0.1)
    assert fitted.nll_after < fitted.nll_before


def test_temperature_on_a_trained_model_lowers_val_nll_and_round_trips(digits_model, tmp_path):
    model, (x_val, y_val), x_test = digits_model["model"], digits_model["val"], digits_model["test"][0]
    fitted = fit_temperature(predict_logits(model, x_val), y_val)
    assert fitted.nll_after <= fitted.nll_before and fitted.fitted_on == "val"
    save_temperature(fitted, tmp_path)
    assert load_temperature(tmp_path) == fitted
    calibrated = torch.softmax(fitted.apply(predict_logits(model, x_test)), 1)
    assert torch.equal(calibrated.argmax(1), predict_logits(model, x_test).argmax(1))
    assert load_temperature(tmp_path / "absent") is None


def test_a_bad_temperature_file_names_the_file_and_field(tmp_path):
    (tmp_path / "calibration.json").write_text(
        json.dumps({"temperature": -1.0, "fitted_on": "val", "nll_before": 1.0, "nll_after": 1.0})
    )
    with pytest.raises(EvaluationError, match="calibration.json: field 'temperature'"):
        load_temperature(tmp_path)
    (tmp_path / "calibration.json").write_text("{")
    with pytest.raises(EvaluationError, match="calibration.json: not a temperature record"):
        load_temperature(tmp_path)
