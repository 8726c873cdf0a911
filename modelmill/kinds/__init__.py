"""Dataset kinds: one core module per kind (schema, preprocessing, default model, expectations,
Label Studio config, raw-input parsing); adding a kind is one module plus one entry in KINDS."""

from __future__ import annotations

import json
from importlib import import_module
from types import ModuleType
from typing import Any

from modelmill.errors import DatasetError
from modelmill.kinds.base import Preprocessor, Schema
from modelmill.kinds.columns import SCHEMA_VERSION

# kind name (dataset.json's "kind") -> core module
KINDS = {
    "image": "modelmill.kinds.image",
    "tabular": "modelmill.kinds.tabular",
    "text": "modelmill.kinds.text",
}

__all__ = [
    "KINDS", "Preprocessor", "Schema", "default_model", "kind_module", "kind_of", "preprocessor_from_state",
    "schema_from_json",
]  # fmt: skip


def kind_module(name: str) -> ModuleType:
    """The core module of a kind (`modelmill.kinds.<name>`)."""
    if name not in KINDS:
        raise DatasetError(f"unknown dataset kind '{name}' (known: {', '.join(sorted(KINDS))})")
    return import_module(KINDS[name])


def kind_of(schema: Schema) -> ModuleType:
    return kind_module(schema.kind)


def schema_from_json(text: str, where: str = "dataset.json") -> Schema:
    """A schema from dataset.json's text; a file without schema_version is the v1 image layout."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise DatasetError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    version = raw.pop("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise DatasetError(
            f"{where}: schema_version {version!r} is newer than this modelmill reads ({SCHEMA_VERSION})"
        )
    kind = raw.pop("kind", "image") if version >= 2 else "image"
    if kind not in KINDS:
        raise DatasetError(f"{where}: unknown dataset kind '{kind}' (known: {', '.join(sorted(KINDS))})")
    try:
        schema: Schema = kind_module(str(kind)).schema_from_dict(raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise DatasetError(f"{where}: not a valid {kind} dataset schema ({exc!r})") from None
    return schema


def preprocessor_from_state(state: dict[str, Any]) -> Preprocessor:
    """Rebuild a fitted preprocessor from its JSON state (the state names its kind)."""
    preprocessor: Preprocessor = kind_module(str(state.get("kind"))).Preprocessor.from_state(state)
    return preprocessor


def default_model(schema: Schema, model_cfg: Any, preprocessor: Preprocessor) -> Any:
    """The kind's default model for this schema, `model:` config and fitted preprocessor."""
    from modelmill.models import build_from_spec

    module = kind_of(schema)
    model = build_from_spec(module.default_model_spec(schema, model_cfg, preprocessor))
    initialise = getattr(module, "initialise", None)  # a pretrained part (text: the encoder's weights)
    return initialise(model) if initialise is not None else model
