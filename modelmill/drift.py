"""Drift between two samples of data (two data versions, or training data and live inputs):
an MMD two-sample test on embeddings, label, prediction and per-feature tests, one report.

The per-feature tests of a table run through Evidently (`modelmill.drift_features`), the others
are scipy.stats and torch. Every test gives a p-value; Benjamini-Hochberg across all of them
decides which drifted. Its
"anything drifted" rule is Simes' test, which holds the false-positive rate at `alpha` under
the null for independent or positively correlated tests without Bonferroni's loss of power
when the tests are correlated (as MMD, label and prediction tests on one sample are).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from modelmill.config import DriftConfig
from modelmill.drift_features import column_kinds, count_table, evidently_p_values, homogeneity_test
from modelmill.errors import DriftError


@dataclass(frozen=True)
class DriftTest:
    """One test: what it compared, its statistic and p-value, and (after correction) the verdict."""

    name: str
    method: str
    statistic: float | None  # None: the test's library gives only the p-value (Evidently)
    p_value: float
    drifted: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class DriftReport:
    """All tests of one comparison; `drifted` when any test is significant after correction."""

    reference: str
    current: str
    n_reference: int
    n_current: int
    alpha: float
    tests: list[DriftTest]
    correction: str = "benjamini-hochberg"
    seconds: float = 0.0

    @property
    def drifted(self) -> bool:
        return any(t.drifted for t in self.tests)

    def drifted_tests(self) -> list[str]:
        return [t.name for t in self.tests if t.drifted]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["drifted"] = self.drifted
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DriftReport:
        fields = {k: v for k, v in raw.items() if k != "drifted"}
        fields["tests"] = [DriftTest(**t) for t in raw["tests"]]
        return cls(**fields)


def benjamini_hochberg(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Which hypotheses BH rejects at false-discovery rate `alpha` (step-up on sorted p-values)."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return []
    order = np.argsort(p)
    below = p[order] <= alpha * np.arange(1, p.size + 1) / p.size
    rejected = np.zeros(p.size, dtype=bool)
    if below.any():
        rejected[order[: int(np.nonzero(below)[0].max()) + 1]] = True
    return rejected.tolist()


def decide(tests: Sequence[DriftTest], alpha: float) -> list[DriftTest]:
    """The tests with `drifted` set by Benjamini-Hochberg across all of them."""
    verdicts = benjamini_hochberg([t.p_value for t in tests], alpha)
    return [replace(t, drifted=bool(v)) for t, v in zip(tests, verdicts, strict=True)]


# --- multivariate: MMD with a permutation p-value ------------------------------------------


def mmd_test(
    reference: torch.Tensor, current: torch.Tensor, permutations: int = 500, seed: int = 0
) -> DriftTest:
    """Unbiased MMD^2 with a Gaussian kernel (median-distance bandwidth over the pooled sample)
    and a permutation p-value: (1 + #{permuted >= observed}) / (1 + permutations)."""
    x = torch.cat([reference.flatten(1), current.flatten(1)]).float()
    n, total = len(reference), len(x)
    if n < 2 or total - n < 2:
        raise DriftError(f"MMD needs at least 2 items a side (got {n} and {total - n})")
    norms = (x * x).sum(1)
    sq = (norms[:, None] + norms[None, :] - 2 * x @ x.T).clamp_min(0)
    upper = torch.triu_indices(total, total, 1)
    bandwidth = float(sq[upper[0], upper[1]].median()) or 1.0
    kernel = torch.exp(-sq / bandwidth)
    kernel.fill_diagonal_(0.0)
    generator = torch.Generator().manual_seed(seed)
    # row 0: the observed split; rows 1..: random splits of the pooled items (1 = reference)
    ranks = torch.rand(permutations, total, generator=generator).argsort(1)
    masks = torch.cat([torch.arange(total)[None] < n, ranks < n]).float()
    values = _mmd2(kernel, masks, n)
    observed, permuted = float(values[0]), values[1:]
    p_value = (1 + int((permuted >= observed).sum())) / (1 + permutations)
    return DriftTest(
        "embeddings",
        "mmd-permutation",
        observed,
        p_value,
        detail={"bandwidth": bandwidth, "permutations": permutations, "dimensions": x.shape[1]},
    )


def _mmd2(kernel: torch.Tensor, masks: torch.Tensor, n: int) -> torch.Tensor:
    """Unbiased MMD^2 of each split (row of `masks`: 1 = reference) from one zero-diagonal kernel."""
    m = kernel.shape[0] - n
    weighted = masks @ kernel
    within_ref = (weighted * masks).double().sum(1)
    between = weighted.double().sum(1) - within_ref
    within_cur = kernel.double().sum() - within_ref - 2 * between
    return within_ref / (n * (n - 1)) + within_cur / (m * (m - 1)) - 2 * between / (n * m)


# --- labels, predictions, features -----------------------------------------------------------


def chi2_test(name: str, reference: Sequence[Any], current: Sequence[Any]) -> DriftTest:
    """Chi-squared test of homogeneity of two categorical samples (categories seen in neither dropped)."""
    table = count_table(reference, current)
    statistic, p_value, dof = homogeneity_test(table)
    shares = (table / table.sum()).round(4)
    detail = {"dof": dof, "shares": {str(k): v for k, v in shares.to_dict("index").items()}}
    if not dof:
        detail = {"categories": len(table)}
    return DriftTest(name, "chi-squared", statistic, p_value, detail=detail)


def label_test(reference: Sequence[Any], current: Sequence[Any]) -> DriftTest:
    """Label drift: are the class frequencies the same in both samples?"""
    return chi2_test("labels", reference, current)


def ks_test(name: str, reference: np.ndarray, current: np.ndarray) -> DriftTest:
    result = stats.ks_2samp(np.asarray(reference, float), np.asarray(current, float))
    return DriftTest(name, "kolmogorov-smirnov", float(result.statistic), float(result.pvalue))


def prediction_test(
    reference_probs: torch.Tensor, current_probs: torch.Tensor, classes: Sequence[str]
) -> DriftTest:
    """Prediction drift: KS on each class's probability, Bonferroni within (one p-value out)."""
    ref, cur = reference_probs.numpy(), current_probs.numpy()
    per_class = {str(c): stats.ks_2samp(ref[:, i], cur[:, i]) for i, c in enumerate(classes[: ref.shape[1]])}
    worst = min(per_class, key=lambda c: per_class[c].pvalue)
    p_value = min(1.0, float(per_class[worst].pvalue) * len(per_class))
    return DriftTest(
        "predictions",
        "kolmogorov-smirnov (per class, bonferroni)",
        float(per_class[worst].statistic),
        p_value,
        detail={"worst_class": worst, "ks": {c: round(float(r.statistic), 4) for c, r in per_class.items()}},
    )


def feature_tests(
    reference: pd.DataFrame, current: pd.DataFrame, html: Path | None = None
) -> list[DriftTest]:
    """Per-feature tests of a table with Evidently's DataDriftPreset (KS for numeric columns, a
    chi-squared test of homogeneity for the others); its HTML report written to `html`."""
    kinds = column_kinds(reference, current)
    tested = {c: k for c, k in kinds.items() if k != "empty"}
    found = evidently_p_values(reference, current, tested, html) if tested else {}
    tests = []
    for column, kind in kinds.items():
        name = f"feature:{column}"
        if kind == "empty":
            tests.append(DriftTest(name, "none (no values)", 0.0, 1.0))
        elif str(column) not in found:
            raise DriftError(f"Evidently's DataDriftPreset gave no result for feature column {column}")
        else:
            method, p_value = found[str(column)]
            tests.append(DriftTest(name, f"evidently: {method}", None, p_value))
    return tests


# --- the champion's view of the data ---------------------------------------------------------


@torch.no_grad()
def embed(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate embeddings, class probabilities) of x: the embedding is the input of the last
    nn.Linear the forward pass calls, caught by a forward hook (generic over model families)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise DriftError(f"{type(model).__name__} has no nn.Linear layer to take embeddings from")
    last_input: list[torch.Tensor] = []

    def keep(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        last_input[:] = [inputs[0]]

    handles = [m.register_forward_hook(keep) for m in linears]
    model.eval()
    device = next(model.parameters()).device
    embeddings, probs = [], []
    try:
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size].to(device))
            embeddings.append(last_input[0].flatten(1).cpu())
            probs.append(torch.softmax(logits, dim=1).cpu())
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(embeddings), torch.cat(probs)


@dataclass
class DriftSample:
    """One side of a comparison: model inputs, labels when known, raw features of a table."""

    name: str
    x: torch.Tensor
    labels: list[str] | None = None
    features: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.x)

    def subsample(self, limit: int, seed: int) -> DriftSample:
        """At most `limit` items, drawn without replacement (the same draw for one seed)."""
        if len(self) <= limit:
            return self
        keep = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        rows = keep.tolist()
        return DriftSample(
            self.name,
            self.x[keep],
            [self.labels[i] for i in rows] if self.labels is not None else None,
            self.features.iloc[rows].reset_index(drop=True) if self.features is not None else None,
        )


def compare(
    model: nn.Module,
    reference: DriftSample,
    current: DriftSample,
    classes: Sequence[str],
    cfg: DriftConfig,
    feature_html: Path | None = None,
) -> DriftReport:
    """Every test that applies to the two samples, decided together (Benjamini-Hochberg);
    `feature_html`: where Evidently's page of the per-feature tests goes (tables only)."""
    import time

    started = time.perf_counter()
    reference = reference.subsample(cfg.max_items, cfg.seed)
    current = current.subsample(cfg.max_items, cfg.seed + 1)
    ref_emb, ref_probs = embed(model, reference.x)
    cur_emb, cur_probs = embed(model, current.x)
    tests = [
        mmd_test(ref_emb, cur_emb, cfg.permutations, cfg.seed),
        prediction_test(ref_probs, cur_probs, classes),
    ]
    if reference.labels is not None and current.labels is not None:
        tests.append(label_test(reference.labels, current.labels))
    if cfg.features and reference.features is not None and current.features is not None:
        tests += feature_tests(reference.features, current.features, feature_html)
    return DriftReport(
        reference.name,
        current.name,
        len(reference),
        len(current),
        cfg.alpha,
        decide(tests, cfg.alpha),
        seconds=time.perf_counter() - started,
    )
