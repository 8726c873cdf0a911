"""Domain exceptions: each names the problem and the place (file, row, field)."""


class ModelmillError(Exception):
    """Base class for errors the CLI turns into one clear line and a non-zero exit."""


class ConfigError(ModelmillError):
    """A configuration file or override is invalid (names the key)."""


class DataSourceError(ModelmillError):
    """A dataset source cannot produce its data (missing package, bad file)."""


class DatasetError(ModelmillError):
    """The dataset folder is missing files or is not in the expected layout."""


class ValidationFailed(ModelmillError):
    """The dataset failed its expectation suite."""

    def __init__(self, message: str, report: "object | None" = None):
        super().__init__(message)
        self.report = report


class GateRejected(ModelmillError):
    """The challenger did not pass the champion/challenger gate (when configured to fail)."""


class CompressionError(ModelmillError):
    """A model cannot be compressed, stored or loaded as configured (names the file or key)."""


class UnsafeModelError(ModelmillError):
    """A model folder or registry version is refused before anything in it is loaded (names the
    version or folder and the file)."""


class ExportFormatError(ModelmillError):
    """A label export cannot be imported; names the file, the task/row and the problem."""

    def __init__(self, path: object, where: str | None, problem: str):
        self.path, self.where, self.problem = str(path), where, problem
        place = f"{self.path}, {where}" if where else self.path
        super().__init__(f"{place}: {problem}")


class TuningError(ModelmillError):
    """The Optuna study cannot be opened or run (names the storage or the study)."""


class PredictionInputError(ModelmillError):
    """Raw input for prediction does not fit the model's schema (names the row and column)."""


class DataImportError(ModelmillError):
    """A file given to `modelmill data import` cannot be imported; names the file, row and column."""

    def __init__(self, path: object, problem: str, row: int | None = None, column: str | None = None):
        self.path, self.problem, self.row, self.column = str(path), problem, row, column
        place = [self.path]
        if row is not None:
            place.append(f"row {row}")
        if column is not None:
            place.append(f"column '{column}'")
        super().__init__(f"{', '.join(place)}: {problem}")


class LockTimeout(ModelmillError):
    """The project lock stayed held by another writer past the timeout (names its PID and command)."""


class DataSyncError(ModelmillError):
    """data/ cannot be made to match data.dvc (names the remote and the missing version)."""


class RegistryConflict(ModelmillError):
    """An alias moved under us: the version the gate compared against is no longer the champion."""


class EvaluationError(ModelmillError):
    """An evaluation input or stored evaluation record is invalid (names the file and field)."""


class DriftError(ModelmillError):
    """Two samples cannot be compared for drift (names the sample, the column or the revision)."""


class DriftDetected(ModelmillError):
    """Drift was detected and the configuration says to fail (drift.on_drift: fail)."""


class AugmentationError(ModelmillError):
    """An augmentation spec is invalid for the data it is applied to (names the key)."""


class ServingError(ModelmillError):
    """A model version cannot be served: it failed its warm-up or smoke check (names the version)."""


class AuditChainError(ModelmillError):
    """The audit history of a model is broken or disagrees with the registry (names the record)."""
