"""The text kind: one text column per item; the schema records its name, language and lengths.

Preprocessing is tokenisation with the packaged all-MiniLM-L6-v2 tokenizer (its tokenizer.json
is part of the preprocessor's JSON state, so it travels with every model); the token length is
fitted on the train split. The default model is that encoder plus a classification head.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from modelmill.kinds.base import schema_json
from modelmill.kinds.columns import ID, LABEL, SCHEMA_VERSION

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

    from modelmill.augment import WordPieces
    from modelmill.config import ModelConfig, ValidationConfig

KIND = "text"
MAX_TOKENS = 128  # longest token sequence the preprocessor keeps (the fitted length is at most this)
MIN_TOKENS = 16
DERIVED = ("_text_empty", "_text_chars", "_text_bad_encoding", "_text_duplicate")
DESCRIPTIONS = {
    "_text_empty": "text missing or blank (or a label whose item_id is not in items)",
    "_text_chars": "text longer than validation.max_text_chars",
    "_text_bad_encoding": "text holds U+FFFD (undecodable bytes) or control characters",
    "_text_duplicate": "the same text (case and spacing aside) as another item",
}
SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "model.text.head_learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "model.text.encoder_learning_rate": {"type": "float", "low": 1e-5, "high": 1e-4, "log": True},
    "model.text.head_hidden": {"type": "categorical", "choices": [0, 128, 256]},
    "model.text.dropout": {"type": "float", "low": 0.0, "high": 0.3},
}
ENGLISH = frozenset(
    {
        "the",
        "a",
        "an",
        "and",
        "or",
        "but",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "is",
        "are",
        "was",
        "were",
        "it",
        "this",
        "that",
        "not",
        "as",
        "at",
        "by",
        "be",
        "have",
        "has",
        "from",
        "his",
        "her",
        "its",
        "their",
        "they",
        "you",
        "he",
        "she",
        "we",
        "i",
    }
)  # fmt: skip
_BAD_CHARS = re.compile("[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class TextSchema:
    name: str
    classes: tuple[str, ...]
    text_column: str
    language: str = "unknown"
    lengths: dict[str, float] = field(default_factory=dict)
    target: str = LABEL
    id_column: str | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = KIND

    @property
    def feature_columns(self) -> list[str]:
        return [self.text_column]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "name": self.name,
            "classes": list(self.classes),
            "text_column": self.text_column,
            "language": self.language,
            "lengths": dict(self.lengths),
            "target": self.target,
            "id_column": self.id_column,
            "description": self.description,
            "extra": self.extra,
        }

    def to_json(self) -> str:
        return schema_json(self.to_dict())


def schema_from_dict(raw: dict[str, Any]) -> TextSchema:
    return TextSchema(
        name=str(raw["name"]),
        classes=tuple(str(c) for c in raw["classes"]),
        text_column=str(raw["text_column"]),
        language=str(raw.get("language", "unknown")),
        lengths={str(k): float(v) for k, v in (raw.get("lengths") or {}).items()},
        target=str(raw.get("target", LABEL)),
        id_column=raw.get("id_column"),
        description=str(raw.get("description", "")),
        extra=dict(raw.get("extra") or {}),
    )


def length_stats(texts: pd.Series) -> dict[str, float]:
    """Characters (min, median, p95, max) and mean words of the non-missing texts."""
    present = texts.dropna().astype(str)
    if present.empty:
        return {}
    chars = present.str.len().to_numpy()
    words = present.str.split().str.len().to_numpy()
    return {
        "chars_min": float(chars.min()),
        "chars_median": float(np.median(chars)),
        "chars_p95": float(np.percentile(chars, 95)),
        "chars_max": float(chars.max()),
        "words_mean": round(float(words.mean()), 2),
    }


def guess_language(texts: pd.Series, sample: int = 2000) -> str:
    """'en' when common English function words are at least 15% of the words, else 'unknown'."""
    words = " ".join(texts.dropna().astype(str).head(sample)).lower().split()
    if not words:
        return "unknown"
    share = sum(w.strip(".,;:!?\"'()") in ENGLISH for w in words) / len(words)
    return "en" if share >= 0.15 else "unknown"


def text_schema(
    name: str, classes: tuple[str, ...], texts: pd.Series, text_column: str, **fields: Any
) -> TextSchema:
    return TextSchema(name, classes, text_column, guess_language(texts), length_stats(texts), **fields)


# --- preprocessing: tokenisation -------------------------------------------------------------


def packaged_tokenizer() -> dict[str, Any]:
    """tokenizer.json of the packaged encoder, parsed (ConfigError when the package is missing)."""
    from modelmill.encoder import encoder_dir

    tokenizer: dict[str, Any] = json.loads((encoder_dir() / "tokenizer.json").read_text())
    return tokenizer


@dataclass(frozen=True)
class TextPreprocessor:
    """Texts -> token ids (N, max_length) int64, padded with 0, [CLS] ... [SEP] as the encoder wants."""

    text_column: str
    max_length: int
    tokenizer_json: dict[str, Any] = field(repr=False, compare=False)
    tokenizer_sha256: str = ""
    kind: ClassVar[str] = KIND

    @cached_property
    def tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(json.dumps(self.tokenizer_json))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return tokenizer

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def transform(self, frame: pd.DataFrame) -> torch.Tensor:
        return self.transform_texts(frame[self.text_column].fillna("").astype(str).tolist())

    def transform_texts(self, texts: list[str]) -> torch.Tensor:
        """Raw texts -> token ids (N, max_length), as `transform` makes them from a frame."""
        import torch

        ids = np.zeros((len(texts), self.max_length), dtype=np.int64)
        for row, tokens in enumerate(self.token_ids(texts)):
            kept = tokens
            if len(tokens) > self.max_length:  # keep [SEP] last, as truncation by the tokenizer does
                kept = [*tokens[: self.max_length - 1], tokens[-1]]
            ids[row, : len(kept)] = kept
        return torch.from_numpy(ids)

    def word_pieces(self) -> WordPieces:
        """The tokenizer's '##' continuation and special ids (token-level word augmentation)."""
        from modelmill.augment import WordPieces

        vocab = self.tokenizer.get_vocab()
        continuations = frozenset(i for token, i in vocab.items() if token.startswith("##"))
        return WordPieces(continuations, self.special_ids())

    def special_ids(self) -> frozenset[int]:
        """The tokenizer's special tokens ([CLS], [SEP], [MASK]...) and the padding id."""
        special = {int(t["id"]) for t in self.tokenizer_json.get("added_tokens", []) if t.get("special")}
        return frozenset(special | {0})

    def state(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "text_column": self.text_column,
            "max_length": self.max_length,
            "tokenizer_sha256": self.tokenizer_sha256,
            "tokenizer": self.tokenizer_json,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TextPreprocessor:
        tokenizer = state["tokenizer"]
        if not isinstance(tokenizer, dict) or tokenizer_digest(tokenizer) != state["tokenizer_sha256"]:
            raise ValueError("text preprocessor: the tokenizer does not match its recorded sha256")
        return cls(str(state["text_column"]), int(state["max_length"]), tokenizer, state["tokenizer_sha256"])


Preprocessor = TextPreprocessor


def tokenizer_digest(tokenizer: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(tokenizer, sort_keys=True).encode()).hexdigest()


def fit_preprocessor(train_frame: pd.DataFrame, schema: TextSchema) -> TextPreprocessor:
    """Token length: the train split's 95th percentile, rounded up to 8, within [16, 128]."""
    if len(train_frame) == 0:
        raise ValueError("cannot fit the text preprocessor on an empty train split")
    tokenizer = packaged_tokenizer()
    probe = TextPreprocessor(schema.text_column, MAX_TOKENS, tokenizer)
    texts = train_frame[schema.text_column].fillna("").astype(str).tolist()
    lengths = [len(ids) for ids in probe.token_ids(texts)]
    length = int(-(-np.percentile(lengths, 95) // 8) * 8)
    length = min(MAX_TOKENS, max(MIN_TOKENS, length))
    return TextPreprocessor(schema.text_column, length, tokenizer, tokenizer_digest(tokenizer))


def default_model_spec(
    schema: TextSchema, model: ModelConfig, preprocessor: TextPreprocessor | None = None
) -> dict[str, Any]:
    """The packaged encoder's architecture + a head (`model.text:` keys)."""
    from modelmill.encoder import MINILM

    cfg = model.text
    return {
        "family": "text",
        "encoder": dict(MINILM),
        "num_classes": len(schema.classes),
        "head_hidden": cfg.head_hidden,
        "dropout": cfg.dropout,
    }


def initialise(model: Any) -> Any:
    """The default model's pretrained part: the packaged encoder's weights."""
    from modelmill.encoder import load_pretrained

    return load_pretrained(model)


# --- validation ---------------------------------------------------------------------------


def _normalised(texts: pd.Series) -> pd.Series:
    return texts.fillna("").astype(str).str.lower().str.split().str.join(" ")


def derive_columns(frame: pd.DataFrame, schema: TextSchema) -> pd.DataFrame:
    """Per-row: blank or missing, length in characters, bad characters, duplicate of another row."""
    column = schema.text_column
    texts = frame[column] if column in frame else pd.Series([None] * len(frame), index=frame.index)
    as_text = texts.fillna("").astype(str)
    frame["_text_empty"] = (texts.isna() | (as_text.str.strip() == "")).astype(int)
    frame["_text_chars"] = as_text.str.len().astype(int)
    frame["_text_bad_encoding"] = as_text.str.count(_BAD_CHARS).astype(int)
    normalised = _normalised(texts)
    frame["_text_duplicate"] = (normalised.duplicated(keep=False) & (normalised != "")).astype(int)
    return frame


def expectations(schema: TextSchema, cfg: ValidationConfig) -> list[Any]:
    """Column set, no blank text, no over-long text, no bad characters, (few) duplicates."""
    gxe: Any = import_module("great_expectations.expectations")

    return [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=[ID, LABEL, schema.text_column, *DERIVED], exact_match=True
        ),
        gxe.ExpectColumnValuesToBeBetween(column="_text_empty", min_value=0, max_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="_text_chars", max_value=cfg.max_text_chars),
        gxe.ExpectColumnValuesToBeBetween(column="_text_bad_encoding", min_value=0, max_value=0),
        gxe.ExpectColumnValuesToBeBetween(
            column="_text_duplicate", min_value=0, max_value=0, mostly=1 - cfg.max_duplicate_fraction
        ),
    ]


# --- Label Studio and prediction input ------------------------------------------------------


def labeling_config(classes: tuple[str, ...], from_name: str, to_name: str, value_field: str) -> str:
    from modelmill.kinds.image import _xml

    choices = "\n".join(f'    <Choice value="{_xml(c)}"/>' for c in classes)
    return (
        "<View>\n"
        f'  <Text name="{_xml(to_name)}" value="${value_field}"/>\n'
        f'  <Choices name="{_xml(from_name)}" toName="{_xml(to_name)}" choice="single" showInLine="true">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


def task_data(
    items: pd.DataFrame, schema: TextSchema, value_field: str, id_field: str = ID
) -> list[dict[str, Any]]:
    """Label Studio task data per item: its id and its text."""
    texts = items[schema.text_column].fillna("").astype(str)
    return [
        {id_field: str(item_id), value_field: text} for item_id, text in zip(items[ID], texts, strict=True)
    ]


def parse_raw(inputs: list[Any], schema: TextSchema) -> pd.DataFrame:
    """JSON strings -> a frame of the text column."""
    from modelmill.errors import PredictionInputError

    for i, value in enumerate(inputs):
        if not isinstance(value, str):
            raise PredictionInputError(
                f"input {i}: expected a text (a JSON string), got {type(value).__name__}"
            )
    return pd.DataFrame({schema.text_column: list(inputs)})
