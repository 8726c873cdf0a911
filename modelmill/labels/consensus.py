"""From several human votes per item to one label: pluggable strategies and agreement figures.

A strategy turns votes (item_id, annotator, label, preferred) into one row per item with the
chosen label, its support, and a status: `labeled`, or a reason for review (`tie`,
`low agreement`, `too few annotations`). Preferred votes (ground truth, accepted in review)
decide an item when present. Overall agreement: Cohen's kappa when exactly two annotators
rated every multiply-annotated item, Fleiss' kappa (variable raters per item) otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import pandas as pd

LABELED, TIE, LOW, FEW = "labeled", "tie", "low agreement", "too few annotations"


@dataclass
class Votes:
    """Votes as index arrays: item i gave class k; counts[i, k] over all and over preferred votes."""

    item_ids: np.ndarray
    classes: tuple[str, ...]
    item: np.ndarray
    annotator: np.ndarray
    annotators: np.ndarray
    label: np.ndarray
    counts: np.ndarray
    preferred_counts: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, classes: Sequence[str]) -> Votes:
        item, item_ids = pd.factorize(frame["item_id"], sort=True)
        annotator, annotators = pd.factorize(frame["annotator"], sort=True)
        label = pd.Categorical(frame["label"], categories=list(classes)).codes.astype(np.int64)
        if (label < 0).any():
            raise ValueError("votes hold labels outside the class set")
        shape = (len(item_ids), len(classes))
        counts, preferred = np.zeros(shape), np.zeros(shape)
        np.add.at(counts, (item, label), 1)
        mask = frame["preferred"].to_numpy(dtype=bool)
        np.add.at(preferred, (item[mask], label[mask]), 1)
        return cls(
            np.asarray(item_ids, dtype=object),
            tuple(classes),
            item,
            annotator,
            np.asarray(annotators, dtype=object),
            label,
            counts,
            preferred,
        )


@dataclass
class Resolution:
    items: (
        pd.DataFrame
    )  # item_id, label (None unless labeled), agreement, confidence, annotations, status, votes
    strategy: str
    kappa: float | None
    kappa_kind: str
    mean_agreement: float | None
    annotator_reliability: dict[str, float] = field(default_factory=dict)

    @property
    def labeled(self) -> pd.DataFrame:
        return self.items[self.items["status"] == LABELED]

    @property
    def for_review(self) -> pd.DataFrame:
        return self.items[self.items["status"] != LABELED]


class Strategy(Protocol):
    name: str

    def posterior(self, votes: Votes) -> tuple[np.ndarray, dict[str, float]]:
        """Per item, a score per class (higher wins) normalised to sum 1; and annotator reliability."""


class MajorityVote:
    name = "majority"

    def posterior(self, votes: Votes) -> tuple[np.ndarray, dict[str, float]]:
        return _normalise(votes.counts), {}


class DawidSkene:
    """EM estimate of one confusion matrix per annotator (Dawid & Skene 1979), majority-initialised."""

    name = "dawid_skene"

    def __init__(self, max_iter: int = 50, tol: float = 1e-6, smoothing: float = 0.01):
        self.max_iter, self.tol, self.smoothing = max_iter, tol, smoothing

    def posterior(self, votes: Votes) -> tuple[np.ndarray, dict[str, float]]:
        truth = _normalise(votes.counts)
        for _ in range(self.max_iter):
            prior, confusion = self._m_step(votes, truth)
            updated = self._e_step(votes, prior, confusion)
            converged = np.abs(updated - truth).max(initial=0.0) < self.tol
            truth = updated
            if converged:
                break
        prior, confusion = self._m_step(votes, truth)
        accuracy = np.einsum("k,akk->a", prior, confusion)
        return truth, {str(a): round(float(r), 4) for a, r in zip(votes.annotators, accuracy, strict=True)}

    def _m_step(self, votes: Votes, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = len(votes.classes)
        prior = (truth.sum(0) + self.smoothing) / (truth.sum() + k * self.smoothing)
        confusion = np.full((len(votes.annotators), k, k), self.smoothing)
        # confusion[a, true, given] += P(true | item) for each vote of a on item
        where = cast(Any, (votes.annotator, slice(None), votes.label))  # numpy's stubs take no slice here
        np.add.at(confusion, where, truth[votes.item])
        return prior, confusion / confusion.sum(axis=2, keepdims=True)

    @staticmethod
    def _e_step(votes: Votes, prior: np.ndarray, confusion: np.ndarray) -> np.ndarray:
        log = np.tile(np.log(prior), (len(votes.item_ids), 1))
        np.add.at(log, votes.item, np.log(confusion[votes.annotator, :, votes.label]))
        log -= log.max(axis=1, keepdims=True)
        return _normalise(np.exp(log))


STRATEGIES: dict[str, type[Strategy]] = {"majority": MajorityVote, "dawid_skene": DawidSkene}


def strategy_named(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown label strategy '{name}' (known: {', '.join(sorted(STRATEGIES))})")
    return STRATEGIES[name]()


def resolve(
    frame: pd.DataFrame,
    classes: Sequence[str],
    strategy: Strategy,
    min_agreement: float = 0.5,
    min_annotations: int = 1,
) -> Resolution:
    """One row per voted item: the label when the votes are clear enough, else a review reason."""
    if frame.empty:
        empty = pd.DataFrame(
            columns=["item_id", "label", "agreement", "confidence", "annotations", "status", "votes"]
        )
        return Resolution(empty, strategy.name, None, "none", None)
    votes = Votes.from_frame(frame, classes)
    score, reliability = strategy.posterior(votes)
    has_preferred = votes.preferred_counts.sum(1) > 0
    score = np.where(has_preferred[:, None], _normalise(votes.preferred_counts), score)
    top = score.max(1)
    choice = score.argmax(1)
    tied = np.isclose(score, top[:, None], rtol=0, atol=1e-9).sum(1) > 1
    n = votes.counts.sum(1)
    agreement = votes.counts[np.arange(len(n)), choice] / n
    status = np.select(
        [tied, n < min_annotations, ~has_preferred & (top < min_agreement)], [TIE, FEW, LOW], LABELED
    )
    items = pd.DataFrame(
        {
            "item_id": votes.item_ids,
            "label": np.asarray(votes.classes, dtype=object)[choice],
            "agreement": agreement.round(4),
            "confidence": top.round(4),
            "annotations": n.astype(int),
            "status": status,
            "votes": "",
        }
    )
    review = status != LABELED  # vote summaries are for the people reviewing; labeled items skip them
    items.loc[review, "votes"] = _vote_summaries(votes.counts[review], votes.classes)
    items.loc[items["status"] != LABELED, "label"] = None
    kappa, kind = agreement_kappa(votes)
    return Resolution(
        items,
        strategy.name,
        kappa,
        kind,
        float(agreement[n >= 2].mean()) if (n >= 2).any() else None,
        reliability,
    )


def agreement_kappa(votes: Votes) -> tuple[float | None, str]:
    """Cohen's kappa for exactly two annotators on every shared item, else Fleiss' kappa."""
    n = votes.counts.sum(1)
    multi = n >= 2
    if not multi.any():
        return None, "none (no item has two annotations)"
    # with two annotators (codes 0 and 1), an item rated once by each has code sum 1
    code_sum = np.bincount(votes.item, weights=votes.annotator, minlength=len(n))
    if len(votes.annotators) == 2 and (n[multi] == 2).all() and (code_sum[multi] == 1).all():
        return _cohen(votes, multi), "cohen"
    return fleiss_kappa(votes.counts[multi]), "fleiss"


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa, generalised to a varying number of raters per item (each item >= 2)."""
    n = counts.sum(1)
    per_item = ((counts**2).sum(1) - n) / (n * (n - 1))
    p_class = counts.sum(0) / counts.sum()
    expected = float((p_class**2).sum())
    observed = float(per_item.mean())
    if np.isclose(expected, 1.0):
        return 1.0 if np.isclose(observed, 1.0) else None
    return round((observed - expected) / (1 - expected), 6)


def _cohen(votes: Votes, multi: np.ndarray) -> float | None:
    frame = pd.DataFrame({"item": votes.item, "annotator": votes.annotator, "label": votes.label})
    pairs = frame[multi[frame["item"].to_numpy()]].pivot_table(
        index="item", columns="annotator", values="label", aggfunc="last"
    )
    first, second = pairs[0].to_numpy(), pairs[1].to_numpy()
    observed = float((first == second).mean())
    k = len(votes.classes)
    expected = float(
        (np.bincount(first, minlength=k) / len(first) * np.bincount(second, minlength=k) / len(second)).sum()
    )
    if np.isclose(expected, 1.0):
        return 1.0 if np.isclose(observed, 1.0) else None
    return round((observed - expected) / (1 - expected), 6)


def _normalise(matrix: np.ndarray) -> np.ndarray:
    total = matrix.sum(1, keepdims=True)
    return cast(np.ndarray, np.divide(matrix, total, out=np.zeros_like(matrix, dtype=float), where=total > 0))


def _vote_summaries(counts: np.ndarray, classes: Sequence[str]) -> list[str]:
    out = []
    for row in counts:
        nonzero = np.flatnonzero(row)
        order = nonzero[np.argsort(-row[nonzero], kind="stable")]
        out.append(", ".join(f"{classes[k]}:{int(row[k])}" for k in order))
    return out
