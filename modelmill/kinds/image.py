"""The image kind: grey or RGB pixel grids stored as columns px0..pxN (channel-major, C x H x W).

Preprocessing scales pixels to [0, 1] by the schema's range, then normalises each channel by
the mean and standard deviation of the train split. The default model is the ConvNet.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from modelmill.kinds.base import schema_json
from modelmill.kinds.columns import ID, LABEL, SCHEMA_VERSION

if TYPE_CHECKING:
    import torch

    from modelmill.config import ModelConfig, ValidationConfig

KIND = "image"
DERIVED = ("_pixel_nulls", "_pixel_min", "_pixel_max")
DESCRIPTIONS = {
    "_pixel_nulls": "pixel values missing (NaN or non-numeric, or a label whose item_id is not in items)",
    "_pixel_min": "pixel value below the schema's range",
    "_pixel_max": "pixel value above the schema's range",
}
SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "train.batch_size": {"type": "categorical", "choices": [32, 64, 128]},
    "train.weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    "train.optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    "model.width": {"type": "categorical", "choices": [8, 16, 32]},
    "model.depth": {"type": "int", "low": 1, "high": 3},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
}


@dataclass(frozen=True)
class ImageSchema:
    name: str
    classes: tuple[str, ...]
    image_shape: tuple[int, int]
    pixel_range: tuple[float, float]
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    channels: int = 1
    kind: ClassVar[str] = KIND

    @property
    def feature_columns(self) -> list[str]:
        return [f"px{i}" for i in range(self.channels * self.image_shape[0] * self.image_shape[1])]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "name": self.name,
            "classes": list(self.classes),
            "image_shape": list(self.image_shape),
            "pixel_range": list(self.pixel_range),
            "channels": self.channels,
            "description": self.description,
            "extra": self.extra,
        }

    def to_json(self) -> str:
        return schema_json(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> ImageSchema:
        from modelmill.kinds import schema_from_json

        schema = schema_from_json(text)
        if not isinstance(schema, cls):
            raise ValueError(f"not an image schema (kind {schema.kind})")
        return schema


def schema_from_dict(raw: dict[str, Any]) -> ImageSchema:
    h, w = (int(v) for v in raw["image_shape"])
    low, high = (float(v) for v in raw["pixel_range"])
    channels = int(raw.get("channels", 1))
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    return ImageSchema(
        name=str(raw["name"]),
        classes=tuple(str(c) for c in raw["classes"]),
        image_shape=(h, w),
        pixel_range=(low, high),
        description=str(raw.get("description", "")),
        extra=dict(raw.get("extra") or {}),
        channels=channels,
    )


def scaled_pixels(frame: pd.DataFrame, schema: ImageSchema) -> np.ndarray:
    """(N, C, H, W) float32 pixels scaled to [0, 1] by the schema's range."""
    low, high = schema.pixel_range
    pixels = frame[schema.feature_columns].to_numpy(dtype=np.float32)
    scaled = (pixels - np.float32(low)) / np.float32(high - low)
    out: np.ndarray = scaled.reshape(-1, schema.channels, *schema.image_shape)
    return out


@dataclass(frozen=True)
class ImagePreprocessor:
    """Scale by the schema's pixel range, then (x - mean) / std per channel (fitted on train)."""

    schema: ImageSchema
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kind: ClassVar[str] = KIND

    def transform(self, frame: pd.DataFrame) -> torch.Tensor:
        import torch

        x = scaled_pixels(frame, self.schema)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return torch.from_numpy(np.ascontiguousarray((x - mean) / std, dtype=np.float32))

    def state(self) -> dict[str, Any]:
        return {"kind": KIND, "schema": self.schema.to_dict(), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ImagePreprocessor:
        schema = {k: v for k, v in state["schema"].items() if k not in ("schema_version", "kind")}
        return cls(schema_from_dict(schema), tuple(state["mean"]), tuple(state["std"]))


Preprocessor = ImagePreprocessor


def fit_preprocessor(train_frame: pd.DataFrame, schema: ImageSchema) -> ImagePreprocessor:
    if len(train_frame) == 0:
        raise ValueError("cannot fit the image preprocessor on an empty train split")
    x = scaled_pixels(train_frame, schema).astype(np.float64)
    mean = x.mean(axis=(0, 2, 3))
    std = np.maximum(x.std(axis=(0, 2, 3)), 1e-6)
    return ImagePreprocessor(schema, tuple(float(v) for v in mean), tuple(float(v) for v in std))


def default_model_spec(
    schema: ImageSchema, model: ModelConfig, preprocessor: ImagePreprocessor | None = None
) -> dict[str, Any]:
    """The ConvNet for this image size and channel count (`model:` top-level keys)."""
    return {
        "family": "convnet",
        "image_shape": list(schema.image_shape),
        "num_classes": len(schema.classes),
        "channels": schema.channels,
        "config": model.model_dump(mode="json", exclude={"tabular", "text"}),
    }


# --- validation ---------------------------------------------------------------------------


def derive_columns(frame: pd.DataFrame, schema: ImageSchema) -> pd.DataFrame:
    """Per-row pixel null count, min and max: the suite's size does not grow with the image."""
    pixels = [c for c in schema.feature_columns if c in frame]  # absent ones: the column check
    values = frame[pixels]
    if not all(pd.api.types.is_numeric_dtype(dtype) for dtype in values.dtypes):
        values = values.apply(pd.to_numeric, errors="coerce")  # text pixels count as missing
    # numpy integer columns cannot hold a missing value: count over the columns that can
    nullable = [
        c for c, dtype in values.dtypes.items() if not (isinstance(dtype, np.dtype) and dtype.kind in "iub")
    ]
    frame["_pixel_nulls"] = values[nullable].isna().sum(axis=1) if nullable else 0
    frame["_pixel_min"] = values.min(axis=1)
    frame["_pixel_max"] = values.max(axis=1)
    return frame


def expectations(schema: ImageSchema, cfg: ValidationConfig) -> list[Any]:
    """Decoded shape and channels (the exact pixel column set), no missing pixel, pixel range."""
    gxe: Any = import_module("great_expectations.expectations")

    low, high = schema.pixel_range
    return [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=[ID, LABEL, *schema.feature_columns, *DERIVED], exact_match=True
        ),
        gxe.ExpectColumnValuesToBeBetween(column="_pixel_nulls", min_value=0, max_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="_pixel_min", min_value=low),
        gxe.ExpectColumnValuesToBeBetween(column="_pixel_max", max_value=high),
    ]


# --- Label Studio and prediction input ------------------------------------------------------


def labeling_config(classes: tuple[str, ...], from_name: str, to_name: str, value_field: str) -> str:
    choices = "\n".join(f'    <Choice value="{_xml(c)}"/>' for c in classes)
    return (
        "<View>\n"
        f'  <Image name="{_xml(to_name)}" value="${value_field}"/>\n'
        f'  <Choices name="{_xml(from_name)}" toName="{_xml(to_name)}" choice="single" showInLine="true">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


def task_data(
    items: pd.DataFrame, schema: ImageSchema, value_field: str, id_field: str = ID
) -> list[dict[str, Any]]:
    """Label Studio task data per item: its id and the image as a PNG data URI."""
    pixels = scaled_pixels(items, schema)
    return [
        {id_field: str(item_id), value_field: "data:image/png;base64," + base64.b64encode(_png(p)).decode()}
        for item_id, p in zip(items[ID], pixels, strict=True)
    ]


def _png(chw: np.ndarray, min_side: int = 112) -> bytes:
    from PIL import Image

    grid = np.clip(np.rint(chw * 255), 0, 255).astype(np.uint8)
    image = Image.fromarray(grid[0]) if grid.shape[0] == 1 else Image.fromarray(grid.transpose(1, 2, 0))
    scale = max(1, -(-min_side // min(image.size)))
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def parse_raw(inputs: list[Any], schema: ImageSchema) -> pd.DataFrame:
    """Base64 PNG/JPEG strings (or data URIs), or pixel arrays in the schema's range (C x H x W,
    H x W or flat) -> a frame of the schema's pixel columns."""
    from modelmill.errors import PredictionInputError

    rows = []
    for i, value in enumerate(inputs):
        if isinstance(value, list):
            rows.append(pixel_array(value, schema, i))
            continue
        if not isinstance(value, str):
            raise PredictionInputError(f"input {i}: expected a base64 image, got {type(value).__name__}")
        payload = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            rows.append(decode_image(base64.b64decode(payload, validate=True), schema))
        except (ValueError, OSError) as exc:
            raise PredictionInputError(f"input {i}: not a decodable image ({exc})") from None
    flat = np.stack(rows) if rows else np.empty((0, len(schema.feature_columns)), dtype=np.uint8)
    return pd.DataFrame(flat, columns=schema.feature_columns)


def pixel_array(value: list[Any], schema: ImageSchema, i: int) -> np.ndarray:
    """A nested or flat list of pixel values -> flat channel-major pixels, size and range checked."""
    from modelmill.errors import PredictionInputError

    width = len(schema.feature_columns)
    try:
        flat = np.asarray(value, dtype=np.float32).reshape(-1)
    except (ValueError, TypeError):
        raise PredictionInputError(f"input {i}: not an array of pixel values") from None
    if flat.size != width:
        raise PredictionInputError(f"input {i}: expected {width} pixel values, got {flat.size}")
    low, high = schema.pixel_range
    if not np.isfinite(flat).all() or flat.min() < low or flat.max() > high:
        raise PredictionInputError(f"input {i}: pixel values outside the range [{low:g}, {high:g}]")
    return flat


def decode_image(data: bytes, schema: ImageSchema) -> np.ndarray:
    """Image file bytes -> flat channel-major pixels at the schema's size and channel count."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        converted = image.convert("L" if schema.channels == 1 else "RGB")
        h, w = schema.image_shape
        resized = converted.resize((w, h), Image.Resampling.BILINEAR)
    grid = np.asarray(resized, dtype=np.uint8)
    chw = grid[None] if schema.channels == 1 else grid.transpose(2, 0, 1)
    low, high = schema.pixel_range
    if (low, high) != (0.0, 255.0):
        return (chw.astype(np.float32) / 255.0 * (high - low) + low).reshape(-1)
    return chw.reshape(-1)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
