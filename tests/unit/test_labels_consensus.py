"""Consensus strategies and agreement figures (pure, milliseconds)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from modelmill.labels.consensus import (
    FEW,
    LABELED,
    LOW,
    TIE,
    DawidSkene,
    MajorityVote,
    Votes,
    agreement_kappa,
    fleiss_kappa,
    resolve,
    strategy_named,
)

CLASSES = ("cat", "dog", "owl")


def votes(*rows):
    """rows of (item, annotator, label[, preferred])."""
    return pd.DataFrame(
        [(*r, False)[:4] for r in rows], columns=["item_id", "annotator", "label", "preferred"]
    )


def test_fleiss_kappa_matches_fleiss_1971_worked_example():
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)


def test_cohen_kappa_for_two_annotators_matches_sklearn():
    rng = np.random.default_rng(1)
    a = rng.choice(CLASSES, 40)
    b = np.where(rng.random(40) < 0.7, a, rng.choice(CLASSES, 40))
    frame = votes(
        *[(f"i{i}", "ann", x) for i, x in enumerate(a)], *[(f"i{i}", "bob", x) for i, x in enumerate(b)]
    )
    kappa, kind = agreement_kappa(Votes.from_frame(frame, CLASSES))
    assert kind == "cohen"
    assert kappa == pytest.approx(cohen_kappa_score(a, b), abs=1e-6)


def test_three_annotators_use_fleiss():
    frame = votes(("x", 1, "cat"), ("x", 2, "cat"), ("x", 3, "dog"), ("y", 1, "owl"), ("y", 2, "owl"))
    assert agreement_kappa(Votes.from_frame(frame, CLASSES))[1] == "fleiss"


def test_majority_vote_labels_ties_and_low_agreement():
    frame = votes(
        ("clear", 1, "cat"),
        ("clear", 2, "cat"),
        ("clear", 3, "dog"),
        ("tied", 1, "cat"),
        ("tied", 2, "dog"),
        ("split", 1, "cat"),
        ("split", 2, "dog"),
        ("split", 3, "owl"),
        ("split", 4, "cat"),
        ("split", 5, "dog"),
        ("split", 6, "cat"),
        ("single", 1, "owl"),
    )
    res = resolve(frame, CLASSES, MajorityVote(), min_agreement=0.6).items.set_index("item_id")
    assert res.loc["clear", "label"] == "cat" and res.loc["clear", "status"] == LABELED
    assert res.loc["clear", "agreement"] == pytest.approx(0.6667, abs=1e-4)
    assert res.loc["tied", "status"] == TIE and pd.isna(res.loc["tied", "label"])
    assert res.loc["split", "status"] == LOW  # 3 of 6 = 0.5 < 0.6
    assert res.loc["single", "status"] == LABELED
    assert res.loc["tied", "votes"] == "cat:1, dog:1" and res.loc["clear", "votes"] == ""


def test_min_annotations_sends_single_votes_to_review():
    res = resolve(votes(("x", 1, "cat")), CLASSES, MajorityVote(), min_annotations=2)
    assert res.items.loc[0, "status"] == FEW


def test_preferred_vote_decides_against_the_majority():
    frame = votes(("x", 1, "cat", True), ("x", 2, "dog"), ("x", 3, "dog"))
    row = resolve(frame, CLASSES, MajorityVote(), min_agreement=0.9).items.iloc[0]
    assert (row["label"], row["status"]) == ("cat", LABELED)
    assert row["agreement"] == pytest.approx(1 / 3, abs=1e-4)


def test_dawid_skene_trusts_the_reliable_annotators():
    rng = np.random.default_rng(7)
    truth = rng.choice(CLASSES, 300)
    rows = []
    for name, accuracy in {"good1": 0.95, "good2": 0.9, "noisy1": 0.4, "noisy2": 0.4, "noisy3": 0.4}.items():
        given = np.where(rng.random(300) < accuracy, truth, rng.choice(CLASSES, 300))
        rows += [(f"i{i:03d}", name, g) for i, g in enumerate(given)]
    frame = votes(*rows)
    ds = resolve(frame, CLASSES, DawidSkene(), min_agreement=0.0)
    mv = resolve(frame, CLASSES, MajorityVote(), min_agreement=0.0)
    expected = pd.Series(truth, index=[f"i{i:03d}" for i in range(300)])

    def accuracy(res):
        got = res.items.set_index("item_id")["label"]
        return float((got == expected.reindex(got.index)).mean())

    assert accuracy(ds) > accuracy(mv) + 0.03
    rel = ds.annotator_reliability
    assert rel["good1"] > 0.85 and rel["noisy1"] < 0.65


def test_strategies_are_pluggable_by_name():
    assert isinstance(strategy_named("majority"), MajorityVote)
    assert isinstance(strategy_named("dawid_skene"), DawidSkene)
    with pytest.raises(ValueError, match="unknown label strategy"):
        strategy_named("coin")


def test_empty_votes_resolve_to_nothing():
    res = resolve(votes(), CLASSES, MajorityVote())
    assert res.items.empty and res.kappa is None
