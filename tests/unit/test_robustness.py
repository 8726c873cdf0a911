"""FGSM/PGD/noise accuracy on a trained digits model, and the sanity checks catching broken attacks."""

import pytest
import torch

from modelmill.config import RobustnessConfig
from modelmill.evaluation.robustness import (
    ATTACKS,
    KIND_BOUNDS,
    attack_sanity_checks,
    evaluate_robustness,
    fgsm,
    pgd,
)
from modelmill.evaluation.sanity import failed_names

CFG = RobustnessConfig(epsilons=[0.0, 0.05, 0.1, 0.2], max_items=200)


@pytest.fixture(scope="module")
def report(digits_model):
    return evaluate_robustness(digits_model["model"], *digits_model["test"], CFG, (0.0, 1.0))


def test_real_attacks_pass_their_sanity_checks(report):
    assert report.passed, [c.detail for c in report.checks if not c.passed]
    assert {c.name for c in report.checks} == {
        "fgsm_eps0_equals_clean",
        "pgd_eps0_equals_clean",
        "fgsm_falls_with_epsilon",
        "pgd_falls_with_epsilon",
        "pgd_at_most_fgsm",
    }
    assert report.clean > 0.9 and report.n == 200
    assert report.attacks["pgd"][0.2] < 0.2  # 0.2 of the pixel range breaks an undefended model
    assert report.strongest() == report.attacks["pgd"][0.2]
    assert report.noise[0.1] > report.attacks["fgsm"][0.1]  # random noise is far weaker than an attack


def test_attacks_stay_in_the_epsilon_ball_and_the_pixel_range(digits_model):
    model, (x, y) = digits_model["model"], digits_model["test"]
    x, y = x[:64], y[:64]
    for attack in (fgsm, pgd):
        adv = attack(model, x, y, 0.1, (0.0, 1.0), CFG)
        assert (adv - x).abs().max() <= 0.1 + 1e-6
        assert adv.min() >= 0.0 and adv.max() <= 1.0
        assert not torch.equal(adv, x)


def test_an_attack_that_ignores_epsilon_is_caught(digits_model):
    def broken_fgsm(model, x, y, eps, bounds, cfg):
        return fgsm(model, x, y, 0.1, bounds, cfg)  # the bug: a fixed step whatever eps says

    attacks = {"fgsm": broken_fgsm, "pgd": ATTACKS["pgd"]}
    report = evaluate_robustness(digits_model["model"], *digits_model["test"], CFG, (0.0, 1.0), attacks)
    assert not report.passed
    assert {"fgsm_eps0_equals_clean", "fgsm_falls_with_epsilon"} <= set(failed_names(report.checks))


def test_a_gradient_sign_bug_is_caught_by_pgd_at_most_fgsm(digits_model):
    def descending_pgd(model, x, y, eps, bounds, cfg):
        towards_loss = pgd(model, x, y, eps, bounds, cfg) - x
        return (x - towards_loss).clamp(0, 1)  # the bug: steps down the loss, helping the model

    attacks = {"fgsm": ATTACKS["fgsm"], "pgd": descending_pgd}
    report = evaluate_robustness(digits_model["model"], *digits_model["test"], CFG, (0.0, 1.0), attacks)
    assert {"pgd_at_most_fgsm", "pgd_falls_with_epsilon"} <= set(failed_names(report.checks))


def test_checks_by_hand():
    good = {"fgsm": {0.0: 0.9, 0.1: 0.5}, "pgd": {0.0: 0.9, 0.1: 0.3}}
    assert not failed_names(attack_sanity_checks(0.9, good, slack=0.01))
    rising = {"fgsm": {0.0: 0.9, 0.1: 0.5, 0.2: 0.7}}
    assert failed_names(attack_sanity_checks(0.9, rising, slack=0.01)) == ["fgsm_falls_with_epsilon"]


def test_tabular_bounds_are_the_training_range_per_feature():
    reference = torch.tensor([[0.0, -2.0], [1.0, 3.0]])
    low, high = KIND_BOUNDS["tabular"](reference)
    assert low.tolist() == [0.0, -2.0] and high.tolist() == [1.0, 3.0]
    assert KIND_BOUNDS["image"](reference) == (0.0, 1.0)
