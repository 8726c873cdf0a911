"""Per-feature drift of a table through Evidently's `DataDriftPreset`: Kolmogorov-Smirnov for numeric
columns, a chi-squared test of homogeneity for the others, and Evidently's HTML report of both.

Every column gets a p-value (the preset is told which tests: its automatic choice switches to
distances such as Wasserstein above 1,000 rows), so the tests are decided together with the
embedding, label and prediction tests (`modelmill.drift.decide`). The categorical test is our
own, registered as an Evidently stat test: Evidently's `chisquare` is a goodness-of-fit test that
takes the reference frequencies as exact, which raises its false-positive rate several times
over (27% at alpha 0.05 for two samples of 200 from one distribution); the test of
homogeneity counts both samples' noise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from modelmill.errors import DriftError

HOMOGENEITY = "chi2_homogeneity"  # the name Evidently knows our categorical test by
METHODS = {"ks": "kolmogorov-smirnov", HOMOGENEITY: "chi-squared (homogeneity)"}  # Evidently's names
_registered: dict[str, Any] = {}


def count_table(reference: Sequence[Any], current: Sequence[Any]) -> pd.DataFrame:
    """Counts per category (rows) of the two samples (columns `ref`, `cur`), values as text."""
    ref, cur = pd.Series(list(reference)).astype(str), pd.Series(list(current)).astype(str)
    return pd.concat([ref.value_counts().rename("ref"), cur.value_counts().rename("cur")], axis=1).fillna(0)


def homogeneity_test(table: pd.DataFrame) -> tuple[float, float, int]:
    """Chi-squared test of homogeneity of a `count_table`: (statistic, p-value, dof); one
    category in all gives p = 1."""
    if len(table) < 2:
        return 0.0, 1.0, 0
    result = stats.chi2_contingency(table.to_numpy().T, correction=False)
    return float(result.statistic), float(result.pvalue), int(result.dof)


def homogeneity_p_value(reference: Sequence[Any], current: Sequence[Any]) -> tuple[float, float, int]:
    """`homogeneity_test` of two categorical samples (categories seen in neither do not count)."""
    return homogeneity_test(count_table(reference, current))


def _homogeneity_stattest() -> Any:
    """Our categorical test as an Evidently StatTest (registered once per process)."""
    if HOMOGENEITY not in _registered:
        from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
        from evidently.legacy.core import ColumnType

        def impl(ref: pd.Series, cur: pd.Series, _kind: Any, threshold: float) -> tuple[float, bool]:
            p_value = homogeneity_p_value(ref, cur)[1]
            return p_value, p_value < threshold

        test = StatTest(
            name=HOMOGENEITY,
            display_name="chi-squared test of homogeneity",
            allowed_feature_types=[ColumnType.Categorical],
            default_threshold=0.05,
        )
        register_stattest(test, default_impl=impl)
        _registered[HOMOGENEITY] = test
    return _registered[HOMOGENEITY]


def column_kinds(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, str]:
    """Each column of `reference`: numeric, categorical, or empty (no values on one side)."""
    missing = sorted(set(reference.columns) - set(current.columns))
    if missing:
        raise DriftError(f"current data lacks feature columns {', '.join(map(str, missing))}")
    kinds = {}
    for column in reference.columns:
        ref, cur = reference[column].dropna(), current[column].dropna()
        if len(ref) == 0 or len(cur) == 0:
            kinds[column] = "empty"
        elif pd.api.types.is_numeric_dtype(ref) and pd.api.types.is_numeric_dtype(cur):
            kinds[column] = "numeric"
        else:
            kinds[column] = "categorical"
    return kinds


def evidently_p_values(
    reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, str], html: Path | None = None
) -> dict[str, tuple[str, float]]:
    """Column -> (Evidently's method name, p-value) from one `DataDriftPreset` report; its HTML
    page written to `html` (atomically) when given."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [str(c) for c, k in kinds.items() if k == "numeric"]
    categorical = [str(c) for c, k in kinds.items() if k == "categorical"]
    columns = numeric + categorical
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)

    def dataset(frame: pd.DataFrame) -> Any:
        table = frame[columns].copy()
        table.columns = columns
        table[categorical] = table[categorical].astype("string")  # one type per column, NaN kept
        return Dataset.from_pandas(table, data_definition=definition)

    preset = DataDriftPreset(columns=columns, num_method="ks", cat_method=_homogeneity_stattest())
    snapshot = Report([preset]).run(dataset(current), dataset(reference))
    out = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            method = str(config.get("method", ""))
            out[config["column"]] = (METHODS.get(method, method), float(metric["value"]))
    if html is not None:
        from modelmill.atomic import atomic_write_text

        html.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(html, snapshot.get_html_str(as_iframe=False))
    return out
