"""Captum IG + saliency on the seeded probe set, and the three sanity checks: each can fail."""

import pytest
import torch

from modelmill.config import ExplanationsConfig
from modelmill.evaluation.explanations import (
    explain,
    plot_attributions,
    probe_indices,
    reinitialised,
    spearman,
    top_fraction_iou,
)
from modelmill.evaluation.sanity import failed_names

CFG = ExplanationsConfig()


@pytest.fixture(scope="module")
def report(digits_model):
    return explain(digits_model["model"], *digits_model["test"], CFG)


def test_probe_set_is_fixed_and_covers_every_class():
    y = torch.arange(10).repeat(30)
    a, b = probe_indices(y, 2, seed=1), probe_indices(y, 2, seed=1)
    assert torch.equal(a, b) and len(a) == 20
    assert sorted(y[a].tolist()) == sorted(list(range(10)) * 2)
    assert not torch.equal(a, probe_indices(y, 2, seed=2))


def test_trained_model_passes_the_three_checks(report):
    assert report.passed, [c.detail for c in report.checks if not c.passed]
    assert [c.name for c in report.checks] == ["ig_completeness", "deletion", "model_randomisation"]
    assert report.deletion_ratio < 0.5  # top-attributed pixels matter far more than random ones
    assert abs(report.randomisation_spearman) < 0.3
    assert len(report.probe_index) == 2 * 10


def test_a_model_with_reinitialised_weights_fails_the_comparison(digits_model, report):
    """The broken model (weights re-initialised) explains differently from the trained one: its
    saliency ranks do not match the trained model's, which is what the check asserts."""
    model, x = digits_model["model"], digits_model["test"][0]
    broken = reinitialised(model, seed=7)
    assert any(not torch.equal(a, b) for a, b in zip(broken.parameters(), model.parameters(), strict=True))
    probes = x[report.probe_index]
    target = torch.tensor(report.target)
    from modelmill.evaluation.explanations import saliency

    assert spearman(saliency(model, probes, target), saliency(broken, probes, target)) < 0.3
    assert spearman(saliency(model, probes, target), report.saliency) == pytest.approx(1.0)


def test_the_randomisation_check_fails_when_the_weights_were_not_reinitialised(digits_model):
    """A 're-initialised' copy that kept the trained weights (the bug the check exists to catch in an
    explainer: attributions that do not depend on the weights) fails the check."""
    model = digits_model["model"]
    kept = reinitialised(model, seed=7)
    kept.load_state_dict(model.state_dict())
    report = explain(model, *digits_model["test"], CFG, randomised=kept)
    assert failed_names(report.checks) == ["model_randomisation"]
    assert report.randomisation_spearman == pytest.approx(1.0)


def test_deletion_check_fails_for_random_attributions(digits_model, report):
    """Attributions from an untrained model do not point at what the trained model uses."""
    from modelmill.evaluation.explanations import deletion_ratio

    model, x = digits_model["model"], digits_model["test"][0]
    probes, target = x[report.probe_index], torch.tensor(report.target)
    noise = torch.rand(probes.shape, generator=torch.Generator().manual_seed(0))
    assert deletion_ratio(model, probes, target, torch.zeros_like(probes), noise, 10, 0) > 0.7


def test_iou_of_top_attributions():
    a = torch.arange(100.0).view(1, 1, 10, 10)
    assert top_fraction_iou(a, a, 0.1) == 1.0
    assert top_fraction_iou(a, -a.flip(-1).flip(-2) + 0.5, 0.1) == 0.0
    half = a.clone()
    half.view(-1)[95:] = 0  # 5 of the top 10 leave
    assert top_fraction_iou(a, half, 0.1) == pytest.approx(5 / 15)


def test_attribution_grid_png(digits_model, report, tmp_path):
    from PIL import Image

    path = plot_attributions(report, digits_model["test"][0], str(tmp_path / "g.png"), rows=10)
    with Image.open(path) as image:  # 10 rows of 64-px tiles, 3 columns, 2-px gaps
        assert image.format == "PNG" and image.size == (3 * 64 + 4, 10 * 64 + 18)


def test_compression_keeps_the_reasons_and_a_random_model_does_not(digits_model):
    """Dynamic int8 (no autograd) is explained by occlusion like its float model."""
    from modelmill.evaluation.explanations import explanation_iou

    model, (x, y) = digits_model["model"], digits_model["test"]
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    kept = explanation_iou(model, quantized, x, y, CFG)
    assert kept > 0.7
    assert explanation_iou(model, model, x, y, CFG) == 1.0
    assert explanation_iou(model, reinitialised(model, seed=3), x, y, CFG) < kept - 0.3
