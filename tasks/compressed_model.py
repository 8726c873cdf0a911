"""The pyfunc flavor of a compressed model: mlflow.pyfunc.load_model() rebuilds the variant
from its stored package (modelmill.compression.storage) and returns logits like the champion's
mlflow.pytorch pyfunc does, so the two are interchangeable for serving code.

Logged as MLflow "models from code" (this file, not a cloudpickled object): loading needs
modelmill installed, as for the champion's pickled torch module."""

from __future__ import annotations

from pathlib import Path

import mlflow.models
import mlflow.pyfunc
import numpy as np

ARTIFACT = "compressed_model"


class CompressedClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from modelmill.compression.storage import from_bytes

        path = Path(context.artifacts[ARTIFACT])
        self.module, arch, _ = from_bytes(path.read_bytes(), source=str(path))
        self.image_shape = arch.image_shape

    def predict(self, context, model_input, params=None) -> np.ndarray:
        """Logits for images (N, 1, H, W) or rows of H*W pixels scaled to [0, 1]."""
        import torch

        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        x = x.reshape(-1, 1, *self.image_shape)
        with torch.inference_mode():
            return self.module(x).numpy()


mlflow.models.set_model(CompressedClassifier())
