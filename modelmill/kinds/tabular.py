"""The tabular kind: one row per item, numeric and categorical columns recorded in the schema.

Preprocessing (fitted on the train split only): numeric columns get median imputation with a
missing-indicator column (for columns with missing values in train) and standardisation;
categorical columns a one-hot encoding with one extra bucket for unknown or missing values.
The default model is a dense network (binary: one sigmoid output).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd

from modelmill.kinds.base import schema_json
from modelmill.kinds.columns import ID, LABEL, SCHEMA_VERSION

if TYPE_CHECKING:
    import torch

    from modelmill.config import ModelConfig, ValidationConfig

KIND = "tabular"
MAX_CATEGORIES = 1000  # more distinct values: free text or an id, not a category
DERIVED = ("_features_missing",)
DESCRIPTIONS = {"_features_missing": "a label whose item_id is not in items (all features missing)"}
NUMERIC_TYPES = [
    *(f"{p}{n}" for p in ("int", "uint", "Int", "UInt") for n in (8, 16, 32, 64)),
    "float16", "float32", "float64", "Float32", "Float64", "double", "float", "int",
]  # fmt: skip
SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "train.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
    "train.batch_size": {"type": "categorical", "choices": [16, 32, 64]},
    "train.weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    "model.tabular.width": {"type": "categorical", "choices": [16, 32, 64, 128]},
    "model.tabular.depth": {"type": "int", "low": 1, "high": 3},
    "model.tabular.dropout": {"type": "float", "low": 0.0, "high": 0.5},
}


@dataclass(frozen=True)
class Column:
    """A feature column: numeric (with the range seen at import) or categorical (its values)."""

    name: str
    type: Literal["numeric", "categorical"]
    categories: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.type == "numeric":
            return {"name": self.name, "type": self.type, "min": self.min, "max": self.max}
        return {"name": self.name, "type": self.type, "categories": list(self.categories)}


@dataclass(frozen=True)
class TabularSchema:
    name: str
    classes: tuple[str, ...]
    columns: tuple[Column, ...]
    target: str = LABEL
    id_column: str | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = KIND

    @property
    def feature_columns(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def numeric(self) -> list[str]:
        return [c.name for c in self.columns if c.type == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [c.name for c in self.columns if c.type == "categorical"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "name": self.name,
            "classes": list(self.classes),
            "columns": [c.to_dict() for c in self.columns],
            "target": self.target,
            "id_column": self.id_column,
            "description": self.description,
            "extra": self.extra,
        }

    def to_json(self) -> str:
        return schema_json(self.to_dict())


def schema_from_dict(raw: dict[str, Any]) -> TabularSchema:
    columns = []
    for c in raw["columns"]:
        if c["type"] not in ("numeric", "categorical"):
            raise ValueError(f"column {c.get('name')!r}: type must be numeric or categorical")
        columns.append(
            Column(
                name=str(c["name"]),
                type=c["type"],
                categories=tuple(str(v) for v in c.get("categories") or ()),
                min=None if c.get("min") is None else float(c["min"]),
                max=None if c.get("max") is None else float(c["max"]),
            )
        )
    return TabularSchema(
        name=str(raw["name"]),
        classes=tuple(str(c) for c in raw["classes"]),
        columns=tuple(columns),
        target=str(raw.get("target", LABEL)),
        id_column=raw.get("id_column"),
        description=str(raw.get("description", "")),
        extra=dict(raw.get("extra") or {}),
    )


def infer_columns(features: pd.DataFrame) -> tuple[Column, ...]:
    """Numeric columns (numbers, not booleans) with their range; the others categorical."""
    columns = []
    for name in features.columns:
        values = features[name]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            finite = values.dropna()
            low, high = (float(finite.min()), float(finite.max())) if len(finite) else (None, None)
            columns.append(Column(str(name), "numeric", min=low, max=high))
        else:
            columns.append(categorical_column(str(name), values.dropna().astype(str).unique()))
    return tuple(columns)


def categorical_column(name: str, values: Any) -> Column:
    categories = sorted({str(v) for v in values})
    if len(categories) > MAX_CATEGORIES:
        raise ValueError(
            f"column '{name}' has {len(categories)} distinct text values (more than {MAX_CATEGORIES}): "
            "free text or an id, not a category (pass it as --id, or drop it)"
        )
    return Column(name, "categorical", categories=tuple(categories))


def categorical_strings(values: pd.Series) -> pd.Series:
    """Categorical values as text (missing stays missing); numbers keep their integer look."""

    def text(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    return values.map(text).astype(object)


# --- preprocessing -------------------------------------------------------------------------


@dataclass(frozen=True)
class TabularPreprocessor:
    """Fitted statistics as plain lists: rebuilt exactly from `state()`."""

    numeric: tuple[str, ...]
    median: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    indicators: tuple[str, ...]
    categories: tuple[tuple[str, tuple[str, ...]], ...]
    kind: ClassVar[str] = KIND

    @property
    def width(self) -> int:
        """Columns of the transformed matrix."""
        return len(self.numeric) + len(self.indicators) + sum(len(c) + 1 for _, c in self.categories)

    def feature_names(self) -> list[str]:
        names = [*self.numeric, *(f"{n}__missing" for n in self.indicators)]
        for name, cats in self.categories:
            names += [*(f"{name}={c}" for c in cats), f"{name}=__unknown__"]
        return names

    def feature_groups(self) -> dict[str, list[int]]:
        """Original column -> the indices of its features in the transformed matrix (in order)."""
        groups = {name: [i] for i, name in enumerate(self.numeric)}
        offset = len(self.numeric)
        for j, name in enumerate(self.indicators):
            groups[name].append(offset + j)
        offset += len(self.indicators)
        for name, cats in self.categories:
            groups[name] = list(range(offset, offset + len(cats) + 1))
            offset += len(cats) + 1
        return groups

    def transform(self, frame: pd.DataFrame) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.transform_numpy(frame))

    def transform_numpy(self, frame: pd.DataFrame) -> np.ndarray:
        parts = []
        if self.numeric:
            x = numeric_matrix(frame, list(self.numeric))
            missing = np.isnan(x)
            filled = np.where(missing, np.asarray(self.median), x)
            parts.append((filled - np.asarray(self.mean)) / np.asarray(self.std))
            index = [self.numeric.index(n) for n in self.indicators]
            parts.append(missing[:, index].astype(np.float64))
        for name, cats in self.categories:
            lookup = {c: i for i, c in enumerate(cats)}
            codes = categorical_strings(frame[name]).map(lambda v, lk=lookup, n=len(cats): lk.get(v, n))
            parts.append(np.eye(len(cats) + 1)[codes.to_numpy(dtype=np.int64)])
        if not parts:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)

    def state(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "numeric": list(self.numeric),
            "median": list(self.median),
            "mean": list(self.mean),
            "std": list(self.std),
            "indicators": list(self.indicators),
            "categorical": [{"name": n, "categories": list(c)} for n, c in self.categories],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TabularPreprocessor:
        return cls(
            numeric=tuple(state["numeric"]),
            median=tuple(float(v) for v in state["median"]),
            mean=tuple(float(v) for v in state["mean"]),
            std=tuple(float(v) for v in state["std"]),
            indicators=tuple(state["indicators"]),
            categories=tuple((c["name"], tuple(c["categories"])) for c in state["categorical"]),
        )


Preprocessor = TabularPreprocessor


def numeric_matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The numeric columns as float64 with NaN for missing values (pandas NA included)."""
    out: np.ndarray = frame[columns].astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def fit_preprocessor(train_frame: pd.DataFrame, schema: TabularSchema) -> TabularPreprocessor:
    """Statistics of the train split only; an all-missing numeric column imputes 0."""
    if len(train_frame) == 0:
        raise ValueError("cannot fit the tabular preprocessor on an empty train split")
    numeric = schema.numeric
    median: list[float] = []
    mean: list[float] = []
    std: list[float] = []
    indicators = []
    if numeric:
        x = numeric_matrix(train_frame, numeric)
        missing = np.isnan(x)
        for j, name in enumerate(numeric):
            present = x[~missing[:, j], j]
            med = float(np.median(present)) if len(present) else 0.0
            filled = np.where(missing[:, j], med, x[:, j])
            sd = float(filled.std())
            median.append(med)
            mean.append(float(filled.mean()))
            std.append(sd if sd > 1e-12 else 1.0)
            if missing[:, j].any():
                indicators.append(name)
    categories = tuple(
        (name, tuple(sorted(set(categorical_strings(train_frame[name]).dropna()))))
        for name in schema.categorical
    )
    return TabularPreprocessor(
        tuple(numeric), tuple(median), tuple(mean), tuple(std), tuple(indicators), categories
    )


def default_model_spec(
    schema: TabularSchema, model: ModelConfig, preprocessor: TabularPreprocessor
) -> dict[str, Any]:
    """A dense network over the transformed columns (`model.tabular:` keys)."""
    cfg = model.tabular
    return {
        "family": "dense",
        "inputs": preprocessor.width,
        "num_classes": len(schema.classes),
        "width": cfg.width,
        "depth": cfg.depth,
        "dropout": cfg.dropout,
    }


# --- validation ---------------------------------------------------------------------------


def derive_columns(frame: pd.DataFrame, schema: TabularSchema) -> pd.DataFrame:
    present = [c for c in schema.feature_columns if c in frame]
    frame["_features_missing"] = frame[present].isna().all(axis=1).astype(int) if present else 1
    return frame


def expectations(schema: TabularSchema, cfg: ValidationConfig) -> list[Any]:
    """Column set, numeric types and ranges, categories, null share per column."""
    gxe: Any = import_module("great_expectations.expectations")

    out: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=[ID, LABEL, *schema.feature_columns, *DERIVED], exact_match=True
        ),
        gxe.ExpectColumnValuesToBeBetween(column="_features_missing", min_value=0, max_value=0),
    ]
    for column in schema.columns:
        if column.type == "numeric":
            out.append(gxe.ExpectColumnValuesToBeInTypeList(column=column.name, type_list=NUMERIC_TYPES))
            if column.min is not None:
                out.append(
                    gxe.ExpectColumnValuesToBeBetween(
                        column=column.name, min_value=column.min, max_value=column.max
                    )
                )
        else:
            out.append(gxe.ExpectColumnValuesToBeInSet(column=column.name, value_set=list(column.categories)))
        if cfg.max_null_fraction < 1:
            mostly = 1 - cfg.max_null_fraction
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=column.name, mostly=mostly))
    return out


# --- Label Studio and prediction input ------------------------------------------------------


def labeling_config(classes: tuple[str, ...], from_name: str, to_name: str, value_field: str) -> str:
    from modelmill.kinds.image import _xml

    choices = "\n".join(f'    <Choice value="{_xml(c)}"/>' for c in classes)
    return (
        "<View>\n"
        f'  <Table name="{_xml(to_name)}" value="${value_field}"/>\n'
        f'  <Choices name="{_xml(from_name)}" toName="{_xml(to_name)}" choice="single" showInLine="true">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


def task_data(
    items: pd.DataFrame, schema: TabularSchema, value_field: str, id_field: str = ID
) -> list[dict[str, Any]]:
    """Label Studio task data per item: its id and the row as a {column: value} table."""
    rows = items[schema.feature_columns].astype(object).where(items[schema.feature_columns].notna(), None)
    return [
        {id_field: str(item_id), value_field: {k: _plain(v) for k, v in row.items()}}
        for item_id, row in zip(items[ID], rows.to_dict(orient="records"), strict=True)
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def parse_raw(inputs: list[Any], schema: TabularSchema) -> pd.DataFrame:
    """JSON rows ({column: value}) -> a frame of the schema's columns; absent keys are missing."""
    from modelmill.errors import PredictionInputError

    known, numeric = set(schema.feature_columns), set(schema.numeric)
    records = []
    for i, row in enumerate(inputs):
        if not isinstance(row, dict):
            raise PredictionInputError(f"row {i}: expected a JSON object of column values")
        unknown = sorted(set(row) - known)
        if unknown:
            raise PredictionInputError(f"row {i}: unknown column(s) {unknown}")
        records.append({k: _number(v, i, k) if k in numeric else v for k, v in row.items()})
    frame = pd.DataFrame.from_records(records, columns=schema.feature_columns)
    for name in schema.numeric:
        frame[name] = frame[name].astype("float64")
    return frame


def _number(value: Any, row: int, column: str) -> float:
    from modelmill.errors import PredictionInputError

    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise PredictionInputError(f"row {row}, column '{column}': expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PredictionInputError(f"row {row}, column '{column}': not a number: {value!r}") from None
