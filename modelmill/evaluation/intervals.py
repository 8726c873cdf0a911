"""Seeded bootstrap intervals of the test metrics, and the paired challenger-vs-champion comparison.

Resamples are multinomial item counts (B, n); every metric is a count matrix product, so 1,000+
resamples of a few thousand items cost milliseconds in numpy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
_CHUNK = 256  # resamples per matrix product: bounds memory at _CHUNK x n floats


@dataclass(frozen=True)
class Interval:
    point: float
    low: float
    high: float
    level: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class PairedComparison:
    """challenger - champion on the same resampled items, for one metric."""

    metric: str
    challenger: Interval
    champion: Interval
    difference: Interval
    share_not_better: float  # resamples where the challenger is not above the champion

    @property
    def significant(self) -> bool:
        return self.difference.low > 0 or self.difference.high < 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PairedComparison:
        """The comparison `as_dict` wrote (tasks pass it between stages as a small record)."""
        parts = {k: Interval(**raw[k]) for k in ("challenger", "champion", "difference")}
        return cls(raw["metric"], share_not_better=float(raw["share_not_better"]), **parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "challenger": self.challenger.as_dict(),
            "champion": self.champion.as_dict(),
            "difference": self.difference.as_dict(),
            "share_not_better": self.share_not_better,
            "significant": self.significant,
        }


def resample_counts(n: int, resamples: int, seed: int) -> Iterator[NDArray[np.float64]]:
    """Chunks of bootstrap resamples as item counts, (chunk, n), each row summing to n; seeded."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        size = min(_CHUNK, resamples - done)
        # n items drawn with replacement, counted per row: the multinomial(n, 1/n) counts, drawn
        # 4x faster than rng.multinomial, which draws one binomial per item and row
        drawn = rng.integers(0, n, size=(size, n)) + np.arange(size)[:, None] * n
        yield np.bincount(drawn.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)
        done += size


def weighted_metrics(
    weights: NDArray[np.float64], y_true: NDArray[np.int64], y_pred: NDArray[np.int64], n_classes: int
) -> dict[str, NDArray[np.float64]]:
    """The four metrics for each row of item weights; macro averages over all n_classes, a class
    absent from a resample counting 0 (as `evaluate_predictions` does with zero_division=0)."""
    classes = np.arange(n_classes)
    is_true = (y_true[:, None] == classes).astype(np.float64)
    is_pred = (y_pred[:, None] == classes).astype(np.float64)
    tp = weights @ (is_true * is_pred)
    true_n, pred_n = weights @ is_true, weights @ is_pred
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_n > 0, tp / pred_n, 0.0)
        recall = np.where(true_n > 0, tp / true_n, 0.0)
        f1 = np.where(true_n + pred_n > 0, 2 * tp / (true_n + pred_n), 0.0)
    return {
        "accuracy": tp.sum(1) / weights.sum(1),
        "macro_precision": precision.mean(1),
        "macro_recall": recall.mean(1),
        "macro_f1": f1.mean(1),
    }


def _interval(point: float, samples: NDArray[np.float64], level: float) -> Interval:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(point), float(low), float(high), level)


def _as_labels(values: ArrayLike) -> NDArray[np.int64]:
    return np.asarray(values, dtype=np.int64).ravel()


def bootstrap_intervals(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    n_classes: int,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 42,
) -> dict[str, Interval]:
    """Percentile bootstrap interval of each metric (point = the metric on the test set itself)."""
    truth, pred = _as_labels(y_true), _as_labels(y_pred)
    point = weighted_metrics(np.ones((1, len(truth))), truth, pred, n_classes)
    chunks = [
        weighted_metrics(w, truth, pred, n_classes) for w in resample_counts(len(truth), resamples, seed)
    ]
    return {m: _interval(point[m][0], np.concatenate([c[m] for c in chunks]), level) for m in METRICS}


def paired_bootstrap(
    y_true: ArrayLike,
    challenger_pred: ArrayLike,
    champion_pred: ArrayLike,
    n_classes: int,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 42,
) -> dict[str, PairedComparison]:
    """Both models scored on the same resampled items; the interval of their difference per metric."""
    truth, chal, champ = _as_labels(y_true), _as_labels(challenger_pred), _as_labels(champion_pred)
    if not len(truth) == len(chal) == len(champ):
        raise ValueError(f"paired bootstrap needs the same items: {len(truth)}, {len(chal)}, {len(champ)}")
    ones = np.ones((1, len(truth)))
    points = weighted_metrics(ones, truth, chal, n_classes), weighted_metrics(ones, truth, champ, n_classes)
    chal_s: dict[str, list[NDArray[np.float64]]] = {m: [] for m in METRICS}
    champ_s: dict[str, list[NDArray[np.float64]]] = {m: [] for m in METRICS}
    for w in resample_counts(len(truth), resamples, seed):
        for store, pred in ((chal_s, chal), (champ_s, champ)):
            for m, values in weighted_metrics(w, truth, pred, n_classes).items():
                store[m].append(values)
    out = {}
    for m in METRICS:
        a, b = np.concatenate(chal_s[m]), np.concatenate(champ_s[m])
        out[m] = PairedComparison(
            m,
            _interval(points[0][m][0], a, level),
            _interval(points[1][m][0], b, level),
            _interval(points[0][m][0] - points[1][m][0], a - b, level),
            float(np.mean(a - b <= 0)),
        )
    return out
