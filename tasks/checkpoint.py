"""The challenger between stages of one run: weights (safetensors) + the model's JSON spec in a
folder of the run's work dir. Nothing is pickled; loading rebuilds the module from its spec."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from modelmill.models import build_from_spec, spec_of

WEIGHTS, SPEC = "model.safetensors", "model.json"


def save_checkpoint(model: nn.Module, folder: str | Path) -> str:
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / WEIGHTS))
    (folder / SPEC).write_text(json.dumps(spec_of(model), indent=2, sort_keys=True))
    return str(folder)


def load_checkpoint(folder: str | Path) -> nn.Module:
    from safetensors.torch import load_model

    folder = Path(folder)
    model = build_from_spec(json.loads((folder / SPEC).read_text()))
    load_model(model, str(folder / WEIGHTS))
    return model.eval()
