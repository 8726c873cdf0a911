"""The challenger between stages of one run: a safe model folder (modelmill.modelfile: weights as
safetensors, spec + classes + input shape as JSON, sha256 manifest) in the run's work dir. The
same folder is what `register` logs. Nothing is pickled; loading verifies, then rebuilds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelmill import modelfile
from modelmill.data import DatasetSchema


def save_checkpoint(
    model: nn.Module,
    folder: str | Path,
    schema: DatasetSchema,
    example: torch.Tensor,
    preprocessing: dict[str, Any] | None = None,
) -> str:
    """`example`: one model input as the run's preprocessor makes it (any kind's shape)."""
    modelfile.save(
        folder,
        model,
        classes=list(schema.classes),
        input_example=torch.zeros_like(example[:1]),
        kind=getattr(schema, "kind", "image"),
        preprocessing=preprocessing,
        schema=schema.to_dict(),
    )
    return str(folder)


def load_checkpoint(folder: str | Path) -> nn.Module:
    return modelfile.load(folder).module
