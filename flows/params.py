"""The retrain flow's parameters (the typed form in the Prefect UI), importable without Prefect
so the CLI can check a configuration before anything heavy starts."""

from pathlib import Path

from pydantic import BaseModel, Field

from modelmill.config import Settings, load_settings


class RetrainParams(BaseModel):
    """Flow parameters: where the project is, which config, and per-run overrides."""

    project_dir: str = Field(".", description="project folder (params.yaml, data/, mlflow/)")
    config: str = Field("params.yaml", description="configuration file, relative to the project")
    epochs: int | None = Field(None, ge=1, description="override train.epochs")
    learning_rate: float | None = Field(None, gt=0, description="override train.learning_rate")
    batch_size: int | None = Field(None, ge=1, description="override train.batch_size")
    seed: int | None = Field(None, description="override train.seed")
    gate_tolerance: float | None = Field(None, ge=0, description="override gate.tolerance")
    model_name: str | None = Field(None, description="override registry.model_name")
    force: bool = Field(False, description="retrain even when nothing changed")
    tune: int = Field(
        0,
        ge=0,
        description="Optuna trials to run first (0 = off); the model then trains with the best params",
    )

    def settings(self) -> Settings:
        path = Path(self.project_dir, self.config)
        return load_settings(
            path if path.exists() or self.config != "params.yaml" else None,
            {
                "train.epochs": self.epochs,
                "train.learning_rate": self.learning_rate,
                "train.batch_size": self.batch_size,
                "train.seed": self.seed,
                "gate.tolerance": self.gate_tolerance,
                "registry.model_name": self.model_name,
            },
        )
