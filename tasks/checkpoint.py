"""The challenger between stages of one run: a safe model folder (modelmill.modelfile: weights as
safetensors, spec + classes + input shape as JSON, sha256 manifest) in the run's work dir. The
same folder is what `register` logs. Nothing is pickled; loading verifies, then rebuilds."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from modelmill import modelfile
from modelmill.data import DatasetSchema


def save_checkpoint(model: nn.Module, folder: str | Path, schema: DatasetSchema) -> str:
    modelfile.save(
        folder,
        model,
        classes=list(schema.classes),
        input_example=torch.zeros(1, 1, *schema.image_shape),
        kind=getattr(schema, "kind", "image"),
    )
    return str(folder)


def load_checkpoint(folder: str | Path) -> nn.Module:
    return modelfile.load(folder).module
