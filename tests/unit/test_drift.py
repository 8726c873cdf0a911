"""Drift tests on real digits: a shift the test makes is detected, a resplit of one version is not."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from modelmill.augment import noisy, rotated
from modelmill.config import DriftConfig, ModelConfig, TrainConfig
from modelmill.data import Dataset, source_module, to_tensors
from modelmill.drift import (
    DriftReport,
    DriftSample,
    benjamini_hochberg,
    compare,
    embed,
    feature_tests,
    ks_test,
    mmd_test,
)
from modelmill.drift_features import homogeneity_p_value
from modelmill.drift_report import to_html, to_markdown, write_report
from modelmill.errors import DriftError
from modelmill.models import build_model
from modelmill.training import seed_everything, train

CFG = DriftConfig(permutations=200, max_items=300)


@pytest.fixture(scope="module")
def digits():
    """All 1,797 digits as tensors, and a champion trained for 3 epochs on the first 1,000."""
    module = source_module("digits")
    dataset = Dataset(module.SCHEMA, *module.load())
    x, y = to_tensors(dataset.labeled(), dataset.schema)
    classes = list(dataset.schema.classes)
    cfg = TrainConfig(epochs=3, batch_size=64, learning_rate=0.005, patience=3, num_threads=2)
    seed_everything(cfg.seed)  # as tasks/train.py does: the weights do not depend on the order tests run in
    model = build_model((8, 8), 10, ModelConfig(width=8, hidden=32))
    champion = train(model, (x[:1000], y[:1000]), (x[1000:1200], y[1000:1200]), cfg).model
    return x, [classes[i] for i in y], classes, champion


def halves(digits, seed=0):
    x, labels, _, _ = digits
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    ref, cur = order[:300], order[300:600]
    return (
        DriftSample("ref", x[ref], [labels[i] for i in ref]),
        DriftSample("cur", x[cur], [labels[i] for i in cur]),
    )


def test_a_resplit_of_one_version_is_not_drift(digits):
    ref, cur = halves(digits)
    report = compare(digits[3], ref, cur, digits[2], CFG)
    assert not report.drifted, report.tests
    assert {t.name for t in report.tests} == {"embeddings", "predictions", "labels"}


@pytest.mark.parametrize(
    ("shift", "expected"),
    [
        (lambda x: rotated(x, 15.0), "embeddings"),
        (lambda x: noisy(x, 0.2, seed=3), "embeddings"),
    ],
    ids=["rotation-15", "noise-0.2"],
)
def test_a_shift_the_test_makes_is_detected(digits, shift, expected):
    ref, cur = halves(digits, seed=1)
    cur = DriftSample("shifted", shift(cur.x), cur.labels)
    report = compare(digits[3], ref, cur, digits[2], CFG)
    assert report.drifted and expected in report.drifted_tests()


def test_a_class_prior_shift_is_label_drift(digits):
    x, labels, classes, champion = digits
    ref, _ = halves(digits, seed=2)
    low = [i for i in range(600, len(x)) if labels[i] in "01234"][:240]
    high = [i for i in range(600, len(x)) if labels[i] not in "01234"][:60]
    cur = DriftSample("prior", x[low + high], [labels[i] for i in low + high])
    report = compare(champion, ref, cur, classes, CFG)
    assert "labels" in report.drifted_tests()


def test_mmd_p_value_is_a_permutation_p_value():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(60, 5, generator=g), torch.randn(60, 5, generator=g)
    same = mmd_test(a, b, permutations=99, seed=1)
    moved = mmd_test(a, b + 1.0, permutations=99, seed=1)
    assert same.p_value > 0.05 and moved.p_value == pytest.approx(1 / 100)
    assert mmd_test(a, b, permutations=99, seed=1) == same  # seeded: the same p-value again
    with pytest.raises(DriftError, match="at least 2 items"):
        mmd_test(a[:1], b)


def test_benjamini_hochberg_steps_up():
    # sorted p: 0.01 <= 0.0125, 0.02 <= 0.025, 0.03 <= 0.0375, 0.2 > 0.05 -> first three rejected
    assert benjamini_hochberg([0.2, 0.01, 0.03, 0.02], 0.05) == [False, True, True, True]
    # Bonferroni would keep 0.02 (> 0.05 / 2): BH rejects both
    assert benjamini_hochberg([0.02, 0.04], 0.05) == [True, True]
    assert benjamini_hochberg([0.5, 0.04], 0.05) == [False, False]


def test_feature_tests_through_evidently_ks_for_numbers_homogeneity_for_categories(tmp_path):
    rng = np.random.default_rng(0)
    n = 1500  # above 1,000 rows Evidently would pick distances (no p-value) unless told the tests
    ref = pd.DataFrame({"mass": rng.normal(0, 1, n), "island": rng.choice(["a", "b", "c"], n)})
    cur = pd.DataFrame({"mass": rng.normal(0.5, 1, n), "island": rng.choice(["a", "b", "c"], n)})
    ref.loc[:9, "island"] = None  # missing values are skipped, not a category
    page = tmp_path / "features.html"
    tests = {t.name: t for t in feature_tests(ref, cur, page)}
    mass, island = tests["feature:mass"], tests["feature:island"]
    assert mass.method == "evidently: kolmogorov-smirnov" and mass.p_value < 1e-6
    assert island.method == "evidently: chi-squared (homogeneity)" and island.p_value > 0.01
    # the same p-value as scipy's tests on the non-missing values: Evidently ran our test, not its own
    assert island.p_value == pytest.approx(homogeneity_p_value(ref["island"].dropna(), cur["island"])[1])
    assert mass.p_value == pytest.approx(ks_test("m", ref["mass"].to_numpy(), cur["mass"].to_numpy()).p_value)
    assert page.stat().st_size > 10_000 and "mass" in page.read_text(encoding="utf-8")
    with pytest.raises(DriftError, match="lacks feature columns island"):
        feature_tests(ref, cur[["mass"]])


def test_the_homogeneity_test_holds_its_level_where_evidentlys_goodness_of_fit_does_not():
    """Two samples of one categorical distribution, 300 resplits: the share of p < 0.05."""
    from scipy import stats

    rng = np.random.default_rng(1)
    ours, goodness = [], []
    for _ in range(300):
        a, b = (
            rng.choice(list("abcd"), 200, p=[0.4, 0.3, 0.2, 0.1]),
            rng.choice(list("abcd"), 200, p=[0.4, 0.3, 0.2, 0.1]),
        )
        ours.append(homogeneity_p_value(a, b)[1] < 0.05)
        counts = {k: ((a == k).sum(), (b == k).sum()) for k in "abcd"}
        goodness.append(
            stats.chisquare([c for _, c in counts.values()], [r for r, _ in counts.values()])[1] < 0.05
        )
    assert 0.02 <= np.mean(ours) <= 0.09
    assert np.mean(goodness) > 0.12  # reference frequencies taken as exact: about 3x the level


def test_embeddings_are_the_input_of_the_last_linear_and_hooks_are_removed(digits):
    x, _, _, champion = digits
    emb, probs = embed(champion, x[:10])
    assert emb.shape == (10, 32) and probs.shape == (10, 10)
    assert torch.allclose(probs.sum(1), torch.ones(10))
    assert all(not m._forward_hooks for m in champion.modules())


def test_report_files_round_trip(digits, tmp_path):
    ref, cur = halves(digits)
    report = compare(digits[3], ref, cur, digits[2], CFG)
    paths = write_report(report, tmp_path)
    back = DriftReport.from_dict(json.loads(paths["json"].read_text()))
    assert back == report and back.drifted == report.drifted
    assert "no drift detected" in to_html(report) and "| embeddings |" in to_markdown(report)
