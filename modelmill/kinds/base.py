"""What every kind provides: a schema and a fitted preprocessor with a JSON state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd
    import torch


class Schema(Protocol):
    """The dataset's schema as dataset.json records it (`kind` names the kind module)."""

    @property
    def name(self) -> str: ...

    @property
    def classes(self) -> tuple[str, ...]: ...

    @property
    def description(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def feature_columns(self) -> list[str]: ...

    def to_dict(self) -> dict[str, Any]: ...

    def to_json(self) -> str: ...


class Preprocessor(Protocol):
    """Raw item columns -> model input tensor; fitted on the train split only; state is plain JSON."""

    @property
    def kind(self) -> str: ...

    def transform(self, frame: pd.DataFrame) -> torch.Tensor: ...

    def state(self) -> dict[str, Any]: ...

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Preprocessor: ...


def schema_json(payload: dict[str, Any]) -> str:
    """dataset.json's bytes: sorted keys, two-space indent, a final newline (stable across machines)."""
    import json

    return json.dumps(payload, indent=2, sort_keys=True) + "\n"
