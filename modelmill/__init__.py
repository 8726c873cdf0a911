"""modelmill core: data, validation, split, models, training, evaluation, gate.

Pure Python over pandas/torch/Great Expectations/Optuna; no Prefect, MLflow or DVC here.
"""

__version__ = "0.1.0"
