"""Bootstrap intervals, the paired challenger-vs-champion comparison and the gate rules."""

import time

import numpy as np
import pytest

from modelmill.config import GateConfig
from modelmill.evaluation import evaluate_predictions
from modelmill.evaluation.intervals import bootstrap_intervals, paired_bootstrap
from modelmill.gate import decide

RNG = np.random.default_rng(0)
Y = RNG.integers(0, 10, 270)


def predictions(accuracy: float, seed: int) -> np.ndarray:
    """Y with a share of items replaced by a wrong class."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(Y)) > accuracy
    return np.where(wrong, (Y + rng.integers(1, 10, len(Y))) % 10, Y)


def test_point_estimates_equal_the_point_metrics():
    pred = predictions(0.9, 1)
    intervals = bootstrap_intervals(Y, pred, 10)
    report = evaluate_predictions(Y, pred, [str(i) for i in range(10)])
    for metric, interval in intervals.items():
        assert interval.point == pytest.approx(report.score(metric), abs=1e-12)
        assert interval.low < interval.point < interval.high


def test_intervals_are_seeded_and_cover_the_binomial_width():
    pred = predictions(0.9, 1)
    a, b = bootstrap_intervals(Y, pred, 10, seed=7), bootstrap_intervals(Y, pred, 10, seed=7)
    assert a == b
    acc = a["accuracy"]
    # normal approximation of a proportion: half-width 1.96 * sqrt(p (1 - p) / n)
    expected = 1.96 * np.sqrt(acc.point * (1 - acc.point) / len(Y))
    assert (acc.high - acc.low) / 2 == pytest.approx(expected, rel=0.15)
    assert bootstrap_intervals(Y, pred, 10, seed=8)["accuracy"] != acc


def test_paired_difference_is_narrower_than_the_unpaired_one():
    """Two models that agree on most items: pairing cancels the shared item difficulty."""
    champion = predictions(0.9, 1)
    challenger = champion.copy()
    challenger[:6] = np.where(challenger[:6] == Y[:6], (Y[:6] + 1) % 10, challenger[:6])
    paired = paired_bootstrap(Y, challenger, champion, 10)["accuracy"]
    unpaired = np.hypot(*(i.high - i.low for i in (paired.challenger, paired.champion)))
    assert paired.difference.point == pytest.approx(paired.challenger.point - paired.champion.point)
    assert paired.difference.high - paired.difference.low < unpaired / 2
    assert paired.difference.high <= 0  # never better on any resample: it only lost items


def test_a_clearly_worse_challenger_is_significant_and_a_tie_is_not():
    champion = predictions(0.95, 1)
    worse = paired_bootstrap(Y, predictions(0.7, 2), champion, 10)["macro_f1"]
    assert worse.significant and worse.difference.high < 0 and worse.share_not_better == 1.0
    tie = paired_bootstrap(Y, predictions(0.95, 3), champion, 10)["macro_f1"]
    assert not tie.significant


def test_paired_bootstrap_refuses_different_items():
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap(Y, Y[:-1], Y, 10)


def test_bootstrap_is_vectorised():
    y = np.random.default_rng(1).integers(0, 10, 3000)
    started = time.perf_counter()
    paired_bootstrap(y, y, np.roll(y, 1), 10, resamples=1000)
    assert time.perf_counter() - started < 5.0


def test_paired_gate_promotes_on_noise_where_the_point_rule_rejects():
    """Two items worse on 270: the point rule keeps the champion, the paired rule does not."""
    champion = predictions(0.95, 1)
    challenger = champion.copy()
    flip = np.flatnonzero(challenger == Y)[:2]
    challenger[flip] = (Y[flip] + 1) % 10
    paired = paired_bootstrap(Y, challenger, champion, 10)["accuracy"]
    cfg = GateConfig(metric="accuracy", tolerance=0.005)
    point = decide(paired.challenger.point, paired.champion.point, cfg.model_copy(update={"rule": "point"}))
    assert not point.promote and "champion kept" in point.reason
    noisy = decide(paired.challenger.point, paired.champion.point, cfg, paired=paired)
    assert noisy.promote and noisy.rule == "paired_bootstrap" and noisy.significant is False
    assert "not significant" in noisy.reason


def test_paired_gate_rejects_a_significantly_worse_challenger():
    champion = predictions(0.95, 1)
    paired = paired_bootstrap(Y, predictions(0.8, 2), champion, 10)["macro_f1"]
    decision = decide(paired.challenger.point, paired.champion.point, GateConfig(), paired=paired)
    assert not decision.promote and decision.significant and "champion kept" in decision.reason


def test_robustness_floor_rejects_a_fragile_challenger():
    cfg = GateConfig(min_robust_accuracy=0.5)
    assert decide(0.97, 0.96, cfg, robust_accuracy=0.6).promote
    fragile = decide(0.97, 0.96, cfg, robust_accuracy=0.3)
    assert not fragile.promote and "min_robust_accuracy" in fragile.reason
