"""The mlflow.pyfunc loader of modelmill's safe model folder (MLmodel `loader_module`): no pickle,
no code from the artifact; `predict` returns the model's logits (float32, one column per class).

`mlflow.pyfunc.load_model("models:/NAME@champion")` calls `_load_pyfunc(data_path)`, which checks
the folder against its own manifest (integrity) before building it from JSON + safetensors; the
registry's copy of the manifest is checked by `tasks.modelstore.load_verified` (modelmill's loads).
Imports neither mlflow nor prefect: this module is what a user's process runs at load.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelmill import modelfile


class SafeModel:
    """A loaded model folder answering pyfunc's `predict`: inputs of the stored shape -> logits."""

    def __init__(self, loaded: modelfile.LoadedModel):
        self.loaded = loaded
        self.input_shape = list(loaded.meta.get("input", {}).get("shape", [-1]))[1:]
        # token ids (the text kind) stay integers; every other input is float32
        self.input_dtype = np.int64 if loaded.meta.get("input", {}).get("dtype") == "int64" else np.float32

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        """Logits for a batch shaped like the input example, or rows of its flattened values."""
        import torch

        x = torch.as_tensor(np.asarray(model_input, dtype=self.input_dtype))
        if self.input_shape:
            x = x.reshape(-1, *self.input_shape)
        with torch.inference_mode():
            return self.loaded.module(x).numpy()


def _load_pyfunc(data_path: str, model_config: dict[str, Any] | None = None) -> SafeModel:
    return SafeModel(modelfile.load(data_path))
