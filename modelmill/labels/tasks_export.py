"""The loop back to Label Studio: the items the champion is least sure about, as import tasks.

Each task carries the item id and the image as a PNG data URI (pixels rendered nearest-
neighbour, scaled up so an 8x8 digit is visible), and the champion's prediction as a
Label Studio pre-annotation (`predictions` with score and model_version).
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd

from modelmill.atomic import atomic_write_bytes
from modelmill.config import LabelsConfig
from modelmill.data import ID, DatasetSchema

METHODS = ("margin", "entropy")


def uncertainty(proba: np.ndarray, method: str = "margin") -> np.ndarray:
    """Higher means less sure: 1 - (top1 - top2) for margin, Shannon entropy (nats) for entropy."""
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(f"expected an (items, classes>=2) probability matrix, got shape {proba.shape}")
    if method == "margin":
        top2 = np.sort(proba, axis=1)[:, -2:]
        return cast(np.ndarray, 1.0 - (top2[:, 1] - top2[:, 0]))
    if method == "entropy":
        safe = np.clip(proba, 1e-12, 1.0)
        return cast(np.ndarray, -(proba * np.log(safe)).sum(axis=1))
    raise ValueError(f"unknown uncertainty method '{method}' (known: {', '.join(METHODS)})")


def select_uncertain(
    item_ids: Sequence[str],
    proba: np.ndarray,
    count: int,
    method: str = "margin",
    exclude: set[str] | frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """The `count` least certain items (ties broken by item id), skipping `exclude`."""
    frame = pd.DataFrame(
        {
            ID: list(map(str, item_ids)),
            "uncertainty": uncertainty(proba, method),
            "row": np.arange(len(item_ids)),
        }
    )
    frame = frame[~frame[ID].isin(exclude)]
    frame = frame.sort_values(["uncertainty", ID], ascending=[False, True], kind="stable").head(count)
    return frame.reset_index(drop=True)


def build_tasks(
    selected: pd.DataFrame,
    items: pd.DataFrame,
    proba: np.ndarray,
    schema: DatasetSchema,
    cfg: LabelsConfig,
    model_version: str,
    data: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Label Studio import tasks for the selected rows (rows index into items/proba); `data`: the
    task data per selected row (another kind's view of the item), else the image as a PNG."""
    pixels = items[schema.feature_columns].to_numpy(dtype=np.float64) if data is None else None
    tasks = []
    for i, (row, item_id) in enumerate(zip(selected["row"], selected[ID], strict=True)):
        scores = proba[row]
        best = int(np.argmax(scores))
        tasks.append(
            {
                "data": data[i]
                if data is not None
                else {
                    cfg.item_id_field: item_id,
                    cfg.image_field: png_data_uri(
                        cast(np.ndarray, pixels)[row], schema.image_shape, schema.pixel_range
                    ),
                },
                "predictions": [
                    {
                        "model_version": model_version,
                        "score": round(float(scores[best]), 6),
                        "result": [
                            {
                                "from_name": cfg.from_name,
                                "to_name": cfg.to_name,
                                "type": "choices",
                                "value": {"choices": [schema.classes[best]]},
                            }
                        ],
                    }
                ],
            }
        )
    return tasks


def labeling_config(classes: Sequence[str], cfg: LabelsConfig) -> str:
    """Label Studio labeling config XML: the image and one single-choice list of the classes."""
    choices = "\n".join(f"    <Choice value={quoteattr(str(c))}/>" for c in classes)
    return (
        "<View>\n"
        f'  <Image name={quoteattr(cfg.to_name)} value={quoteattr("$" + cfg.image_field)} zoom="true"/>\n'
        f'  <Choices name={quoteattr(cfg.from_name)} toName={quoteattr(cfg.to_name)} choice="single-radio"'
        ' showInline="true" required="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def write_tasks(path: str | Path, tasks: list[dict[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(tasks, indent=1) + "\n").encode())
    return path


def write_labeling_config(path: str | Path, classes: Sequence[str], cfg: LabelsConfig) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, labeling_config(classes, cfg).encode())
    return path


def png_data_uri(
    pixels: np.ndarray, shape: tuple[int, int], pixel_range: tuple[float, float], min_side: int = 112
) -> str:
    return (
        "data:image/png;base64," + base64.b64encode(render_png(pixels, shape, pixel_range, min_side)).decode()
    )


def render_png(
    pixels: np.ndarray, shape: tuple[int, int], pixel_range: tuple[float, float], min_side: int = 112
) -> bytes:
    """An 8-bit greyscale PNG (dark ink on white), scaled up by an integer factor (nearest)."""
    low, high = pixel_range
    grey = np.clip((np.asarray(pixels, dtype=float) - low) / (high - low), 0, 1).reshape(shape)
    image = (255 - np.rint(grey * 255)).astype(np.uint8)
    scale = max(1, -(-min_side // min(shape)))
    image = np.kron(image, np.ones((scale, scale), dtype=np.uint8))
    height, width = image.shape
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
