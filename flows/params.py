"""The flows' parameters (the typed forms in the Prefect UI), importable without Prefect so the
CLI can check a configuration before anything heavy starts. Every flow loads its settings the
same way: `ProjectParams.settings()` -> `load_project_settings(project_dir, config, overrides)`."""

from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr

from modelmill.config import Settings, load_project_settings


class ProjectParams(BaseModel):
    """Where the project is and which configuration file; subclasses add per-run overrides."""

    project_dir: str = Field(".", description="project folder (params.yaml, data/, mlflow/)")
    config: str = Field("params.yaml", description="configuration file, relative to the project")

    def overrides(self) -> dict[str, Any]:
        """Dotted configuration keys this run overrides (None: keep the file's value)."""
        return {}

    def settings(self) -> Settings:
        return load_project_settings(self.project_dir, self.config, self.overrides())


class RetrainParams(ProjectParams):
    """Flow parameters: where the project is, which config, and per-run overrides."""

    epochs: int | None = Field(None, ge=1, description="override train.epochs")
    learning_rate: float | None = Field(None, gt=0, description="override train.learning_rate")
    batch_size: int | None = Field(None, ge=1, description="override train.batch_size")
    seed: int | None = Field(None, description="override train.seed")
    gate_tolerance: float | None = Field(None, ge=0, description="override gate.tolerance")
    model_name: str | None = Field(None, description="override registry.model_name")
    force: bool = Field(False, description="retrain even when nothing changed")
    tune: int = Field(
        0, ge=0, description="Optuna trials to run first (0 = off); then train with the best params"
    )

    def overrides(self) -> dict[str, Any]:
        return {
            "train.epochs": self.epochs,
            "train.learning_rate": self.learning_rate,
            "train.batch_size": self.batch_size,
            "train.seed": self.seed,
            "gate.tolerance": self.gate_tolerance,
            "registry.model_name": self.model_name,
        }


class TuneParams(ProjectParams):
    """Flow parameters: the project, the configuration and the tuning budget of this run."""

    trials: int | None = Field(None, ge=1, description="override tune.trials (total in the study)")
    timeout: float | None = Field(None, gt=0, description="override tune.timeout (seconds, this run)")
    workers: int | None = Field(None, ge=1, description="override tune.workers (trials at once)")
    pruner: str | None = Field(None, description="override tune.pruner: hyperband | median | none")
    storage: SecretStr | None = Field(
        None, description="override tune.storage (SQLAlchemy URL; recorded masked: prefer params.yaml)"
    )
    cluster: str | None = Field(None, description="override tune.cluster: local:N or tcp://HOST:8786 (Dask)")

    def overrides(self) -> dict[str, Any]:
        return {
            "tune.trials": self.trials,
            "tune.timeout": self.timeout,
            "tune.workers": self.workers,
            "tune.pruner": self.pruner,
            "tune.storage": self.storage.get_secret_value() if self.storage else None,
            "tune.cluster": self.cluster,
        }


class CompressParams(ProjectParams):
    """Flow parameters: the project, the model version to compress, and budget overrides."""

    model: str | None = Field(
        None, description="NAME@alias or NAME/version (default: registry.model_name@champion)"
    )
    budget_points: float | None = Field(None, ge=0, description="override compress.budget_points")
    select_by: str | None = Field(None, description="override compress.select_by: size | latency")

    def overrides(self) -> dict[str, Any]:
        return {"compress.budget_points": self.budget_points, "compress.select_by": self.select_by}


class ImportLabelsParams(ProjectParams):
    """Flow parameters: the project, the exports (default: new files in labels.inbox), overrides."""

    paths: list[str] = Field(
        default_factory=list, description="export files; empty: new exports in labels.inbox"
    )
    strategy: Literal["majority", "dawid_skene"] | None = Field(None, description="override labels.strategy")
    min_agreement: float | None = Field(None, ge=0, le=1, description="override labels.min_agreement")
    strict: bool | None = Field(None, description="override labels.strict")

    def overrides(self) -> dict[str, Any]:
        return {
            "labels.strategy": self.strategy,
            "labels.min_agreement": self.min_agreement,
            "labels.strict": self.strict,
        }


class DriftParams(ProjectParams):
    """Flow parameters: the two sides of a drift check (`modelmill drift --from ... --to ...`)."""

    reference: str = Field(
        "champion", description="data version md5, git revision of data.dvc, champion or workspace"
    )
    current: str = Field(
        "workspace", description="as reference, or a CSV / Parquet / folder of inputs (e.g. predictions)"
    )
    fail_on_drift: bool = Field(False, description="fail the flow run when drift is detected")


class PromoteParams(ProjectParams):
    """Flow parameters: which version becomes the champion, and why (recorded in the audit history)."""

    model: str | None = Field(None, description="registered model name (default: registry.model_name)")
    version: str = Field(..., description="the model version to promote to champion")
    reason: str = Field("manual promotion", description="why (kept in the audit record)")


class RollbackParams(ProjectParams):
    """Flow parameters: roll the champion back (to the previous one, or to a given version)."""

    model: str | None = Field(None, description="registered model name (default: registry.model_name)")
    to: str | None = Field(None, description="version to roll back to (default: the previous champion)")
    reason: str = Field("rollback", description="why (kept in the audit record)")
