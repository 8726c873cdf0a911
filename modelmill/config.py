"""Settings: one pydantic model loaded from params.yaml, passed down as typed sub-configs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    SerializationInfo,
    ValidationError,
    field_validator,
    model_validator,
)

from modelmill.errors import ConfigError
from modelmill.secrets import mask_bearer_url, mask_url, redact

REVEAL = {"reveal_secrets": True}  # serialization context that dumps secrets in clear (handoffs only)


def _masking(mask: Callable[[str], str]) -> PlainSerializer:
    def serialize(value: SecretStr, info: SerializationInfo) -> str:
        raw = value.get_secret_value()
        return raw if (info.context or {}).get("reveal_secrets") else mask(raw)

    return PlainSerializer(serialize, return_type=str, when_used="always")


# credentials: kept as SecretStr (repr masked), dumped masked everywhere unless REVEAL is passed
SecretUrl = Annotated[SecretStr, _masking(mask_url)]  # password / query values hidden
BearerUrl = Annotated[SecretStr, _masking(mask_bearer_url)]  # the path is the credential


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    source: str = "digits"
    dir: str = "data"
    dvc_remote: str | None = Field(None, description="DVC remote to push to (None: the repo's default)")
    push: bool = True
    git_commit: bool = Field(False, description="git-commit data.dvc when a new data version is made")
    image_size: tuple[int, int] = Field(
        (32, 32), description="height, width that `data import` resizes image files to (Pillow)"
    )

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 1 or max(value) > 1024:
            raise ValueError("image_size: height and width must be between 1 and 1024")
        return value

    lock_timeout: float = Field(
        3600, ge=0, description="seconds a writer waits for the project lock (another writer holds it)"
    )


class ValidationConfig(_Section):
    min_rows: int = Field(100, ge=1)
    failed_rows_shown: int = Field(5, ge=0)
    max_null_fraction: float = Field(
        0.5, ge=0, le=1, description="tabular: largest share of missing values in a feature column"
    )
    max_text_chars: int = Field(5000, ge=1, description="text: longest text accepted, in characters")
    max_duplicate_fraction: float = Field(
        0.0, ge=0, le=1, description="text: largest share of rows whose text another row repeats"
    )


class SplitConfig(_Section):
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    salt: str = "modelmill"

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must be below 0.9")
        return self


class DenseConfig(_Section):
    """The tabular kind's dense network (binary: one sigmoid output; multiclass: softmax)."""

    width: int = Field(64, ge=1, description="units per hidden layer")
    depth: int = Field(2, ge=0, le=6, description="hidden layers (0: logistic regression)")
    dropout: float = Field(0.1, ge=0, lt=1)


class TextModelConfig(_Section):
    """The text kind's model: the packaged all-MiniLM-L6-v2 encoder + a classification head."""

    mode: Literal["frozen", "finetune"] = Field(
        "finetune",
        description="frozen: embeddings computed once per data version (cached), only the head trains; "
        "finetune: every layer trains",
    )
    head_hidden: int = Field(0, ge=0, description="units of the head's hidden layer (0: a linear head)")
    dropout: float = Field(0.1, ge=0, lt=1)
    encoder_learning_rate: float = Field(5e-5, gt=0, description="finetune: the encoder's peak rate")
    head_learning_rate: float = Field(1e-3, gt=0, description="the head's (peak) rate, in both modes")
    warmup_fraction: float = Field(0.1, ge=0, lt=1, description="finetune: share of steps warming up")
    finetune_epochs: int = Field(2, ge=1, description="finetune: epochs (train.epochs: the frozen head's)")
    embedding_batch_size: int = Field(128, ge=1, description="texts per encoder forward when embedding")


class ModelConfig(_Section):
    """Model per data kind: the top-level keys are the image kind's ConvNet; `tabular:` the dense net;
    `text:` the text kind's encoder and head."""

    width: int = Field(32, ge=1, description="channels of the first conv block; doubled per block")
    depth: int = Field(2, ge=1, le=4, description="number of conv blocks")
    hidden: int = Field(128, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    tabular: DenseConfig = DenseConfig()
    text: TextModelConfig = TextModelConfig()


class TrainConfig(_Section):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1)
    patience: int = Field(5, ge=1, description="epochs without val-loss improvement before stopping")
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(None, ge=1)


class GateConfig(_Section):
    metric: Literal["macro_f1", "accuracy"] = "macro_f1"
    tolerance: float = Field(0.005, ge=0, description="challenger may be this much below the champion")
    fail_on_reject: bool = False
    min_score: float | None = Field(
        None,
        ge=0,
        le=1,
        description="absolute floor of the metric (null: none; the right one is per dataset)",
    )
    # paired_bootstrap by default: on ~270 test items one item moves accuracy by 0.004, so the point
    # rule keeps or replaces the champion on noise. The paired rule keeps the champion only when the
    # challenger is worse beyond the tolerance with confidence (the whole interval of the paired
    # difference below -tolerance): a nightly retrain on newer data wins unless the data say otherwise.
    rule: Literal["point", "paired_bootstrap"] = "paired_bootstrap"
    min_robust_accuracy: float | None = Field(
        None, ge=0, le=1, description="reject when accuracy under the strongest configured attack is lower"
    )


class RegistryConfig(_Section):
    model_name: str = "digits-classifier"


class TrackingConfig(_Section):
    uri: SecretUrl = SecretStr("sqlite:///mlflow/mlflow.db")
    artifacts_dir: str = "mlflow/artifacts"
    experiment: str = "modelmill"

    @field_validator("uri")
    @classmethod
    def _no_file_store(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw.startswith("file:") or "://" not in raw:
            raise ValueError("tracking.uri must be a database or server URI (sqlite:///..., http://...)")
        return value


class CompressConfig(_Section):
    """Compression variants of a trained model and the accuracy budget that picks one."""

    enabled: bool = Field(True, description="run the compress step in `retrain` after the gate")
    dynamic_int8: bool = Field(True, description="post-training dynamic int8 of the linear layers")
    static_int8: bool = Field(True, description="static int8 (FX graph mode) of conv+linear, calibrated")
    prune: bool = Field(True, description="global unstructured L1 pruning + fine-tune + prune.remove")
    distill: bool = Field(
        True, description="knowledge distillation into a narrower student of the same family"
    )
    onnx: bool = Field(True, description="export the selected variant to ONNX, check with onnxruntime")
    sparsities: list[float] = Field(default_factory=lambda: [0.5, 0.8, 0.9])
    finetune_epochs: int = Field(3, ge=0, description="epochs of fine-tuning after pruning (at most)")
    patience: int = Field(
        1,
        ge=1,
        description="fine-tuning and distillation stop after this many epochs without a val-loss gain",
    )
    finetune_learning_rate: float = Field(5e-4, gt=0)
    student_width: int = Field(12, ge=1)
    student_depth: int | None = Field(None, ge=1, le=4, description="None: the teacher's depth")
    student_hidden: int = Field(64, ge=1)
    student_dense_width: int | None = Field(
        None, ge=1, description="tabular student's units per hidden layer (None: a quarter of the teacher's)"
    )
    student_layers: int = Field(1, ge=1, le=6, description="text student's transformer layers (teacher: 6)")
    distill_epochs: int | None = Field(
        None,
        ge=1,
        description="at most (None: the teacher's, train.epochs; text: model.text.finetune_epochs)",
    )
    min_subset_batches: int = Field(
        4,
        ge=1,
        description="when less than an epoch fits the budget, fine-tuning and distillation train on a "
        "seeded subset of the training split: not on fewer than this many train.batch_size batches",
    )
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1, description="weight of the soft-target (teacher) loss")
    quantize_student: bool = Field(True, description="also add the student quantized to static int8")
    backend: Literal["x86", "fbgemm", "qnnpack", "onednn"] = "x86"
    calibration_batches: int = Field(8, ge=1)
    calibration_batch_size: int = Field(64, ge=1)
    budget_points: float = Field(1.0, ge=0, description="max accuracy drop (points) vs the float model")
    select_by: Literal["size", "latency"] = "size"
    selection_items: int | None = Field(
        2000,
        ge=1,
        description="validation items the selection accuracy is measured on (a seeded sample beyond this; "
        "null: all); the test split is always measured whole",
    )
    latency_batch_sizes: list[int] = Field(default_factory=lambda: [1, 256])
    serving_batch_size: int = Field(256, ge=1, description="batch size whose latency select_by=latency uses")
    latency_repeats: int = Field(30, ge=1)
    latency_seconds: float = Field(20.0, gt=0, description="timing stops after this long (at least 2 rounds)")
    threads: int = Field(1, ge=1, description="torch threads while measuring latency")
    max_train_ratio: float | None = Field(
        0.5,
        ge=0,
        description="the stage's time budget: this x the training stage's seconds (null or 0: no budget)",
    )
    registered_suffix: str = "-compressed"
    min_explanation_iou: float | None = Field(
        None, ge=0, le=1, description="selected variant's top-10% attributions vs the float's; below: none"
    )

    @field_validator("sparsities")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 < s < 1 for s in value):
            raise ValueError("each sparsity must be in (0, 1)")
        return value

    @model_validator(mode="after")
    def _serving_batch_measured(self) -> CompressConfig:
        if self.serving_batch_size not in self.latency_batch_sizes:
            raise ValueError("serving_batch_size must be one of latency_batch_sizes")
        return self


class IntervalsConfig(_Section):
    resamples: int = Field(1000, ge=1000, description="bootstrap resamples (seeded, vectorised)")
    level: float = Field(0.95, gt=0, lt=1, description="confidence level of the intervals")
    seed: int = 42


class CalibrationConfig(_Section):
    bins: int = Field(15, ge=2, description="equal-width confidence bins of ECE and the diagram")
    temperature_scaling: bool = Field(True, description="fit a temperature on val, stored with the model")


class RobustnessConfig(_Section):
    enabled: bool = True
    # in the input's own scale: images are [0, 1] pixels; tabular features are standardised
    epsilons: list[float] = Field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2])
    pgd_steps: int = Field(5, ge=1)
    pgd_step_factor: float = Field(2.5, gt=0, description="PGD step = factor * epsilon / steps")
    noise_sigmas: list[float] = Field(default_factory=lambda: [0.1, 0.2])  # texts: x the embeddings' std
    # texts: share of characters perturbed (char_noise) and of words dropped (word_drop)
    text_rates: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3])
    max_items: int = Field(512, ge=1, description="test items attacked (a seeded subset beyond this)")
    text_max_items: int = Field(256, ge=1, description="texts: test items perturbed (each rate: a pass)")
    slack: float = Field(0.01, ge=0, description="accuracy slack of the monotonicity checks")
    seed: int = 42

    @field_validator("epsilons", "noise_sigmas", "text_rates")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if any(v < 0 for v in value):
            raise ValueError("must be >= 0")
        return sorted(value)

    @field_validator("text_rates")
    @classmethod
    def _below_one(cls, value: list[float]) -> list[float]:
        if any(v >= 1 for v in value):
            raise ValueError("a share of characters or words: must be < 1")
        return value


class ExplanationsConfig(_Section):
    enabled: bool = True
    probes_per_class: int = Field(2, ge=1, description="fixed, seeded probe items per class")
    ig_steps: int = Field(
        128,
        ge=2,
        description="IG steps (Gauss-Legendre); at 64, 25% of digits probes missed the 1% completeness",
    )
    text_ig_steps: int = Field(
        32, ge=2, description="texts: IG steps (largest completeness error at 32: 3e-4)"
    )
    completeness_tolerance: float = Field(0.01, gt=0)
    completeness_share: float = Field(0.95, gt=0, le=1, description="probes that must meet the tolerance")
    deletion_steps: int = Field(10, ge=2)
    deletion_max_ratio: float = Field(0.7, gt=0, description="AUC(top first) / AUC(random) at most")
    randomisation_max_spearman: float = Field(0.3, description="trained vs re-initialised model")
    top_fraction: float = Field(0.1, gt=0, le=1, description="share of features the IoU compares")
    permutation_repeats: int = Field(5, ge=1, description="tabular: permutations per column (importance)")
    seed: int = 42


class EvaluationConfig(_Section):
    """Evaluation beyond accuracy (issue 16): each part can be turned off."""

    intervals: IntervalsConfig = IntervalsConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    robustness: RobustnessConfig = RobustnessConfig()
    explanations: ExplanationsConfig = ExplanationsConfig()


class LabelsConfig(_Section):
    """Label Studio import (issue 3): where exports arrive and how votes become labels."""

    inbox: str = Field("labels/inbox", description="folder the retrain flow checks for new exports")
    from_name: str = Field("label", description="name of the <Choices> tag whose results are the class")
    to_name: str = Field("image", description="name of the <Image> tag the choices refer to")
    item_id_field: str = Field("item_id", description="key in task data that holds the item id")
    image_field: str = Field("image", description="key in task data that holds the displayable image")
    strategy: Literal["majority", "dawid_skene"] = "majority"
    min_agreement: float = Field(0.5, ge=0, le=1, description="items below this agreement go to review")
    min_annotations: int = Field(1, ge=1, description="items with fewer human annotations go to review")
    strict: bool = Field(False, description="refuse the whole import when any row would be skipped")
    max_export_mb: float = Field(2048, gt=0, description="exports above this size are refused")
    export_count: int = Field(100, ge=1, description="tasks written by export-tasks")
    uncertainty: Literal["margin", "entropy"] = "margin"


# --- tuning (issue 4) -------------------------------------------------------------------


class SearchParam(_Section):
    """One dimension of the search space: a float/int range (optionally log) or a choice."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[str | int | float | bool] | None = None

    @model_validator(mode="after")
    def _well_formed(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError("categorical needs a non-empty 'choices' list and no low/high")
            return self
        if self.choices is not None or self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs 'low' and 'high' and no 'choices'")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log scale needs low > 0 and no step")
        if self.type == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError("int needs integer low and high")
        return self

    def candidates(self) -> list[str | int | float | bool]:
        """Values at the edges of the space (checked against the configuration's own rules)."""
        if self.type == "categorical":
            return list(self.choices or ())
        assert self.low is not None and self.high is not None  # _well_formed
        cast: type[int] | type[float] = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


class TuneConfig(_Section):
    trials: int = Field(30, ge=0, description="trials in the study in total (resumes count); 0 = off")
    timeout: float | None = Field(None, gt=0, description="seconds for this invocation")
    workers: int = Field(1, ge=1, description="trials run at once (processes)")
    storage: SecretUrl = Field(SecretStr("sqlite:///optuna/optuna.db"), description="Optuna RDB storage URL")
    cluster: str | None = Field(
        None, description="trials on Dask: local:N (N worker processes) or tcp://HOST:PORT (a scheduler)"
    )
    study_prefix: str = "modelmill"
    metric: Literal["val_loss", "val_accuracy"] = "val_loss"
    epochs: int = Field(20, ge=1, description="epochs cap per trial (Hyperband max resource)")
    # Hyperband: with TPE the pruner Optuna's benchmarks rank best; bench/tuning.py here: 2x
    # faster than no pruning over 3 seeds at an equal best value (median: 1.4x)
    pruner: Literal["median", "hyperband", "none"] = "hyperband"
    pruner_startup_trials: int = Field(5, ge=0, description="median: trials before pruning starts")
    pruner_warmup_epochs: int = Field(2, ge=0, description="median: epochs before a trial can be pruned")
    sampler_seed: int = 42
    sampler_startup_trials: int = Field(10, ge=0, description="TPE: random trials first")
    warm_start: bool = Field(True, description="a fresh study starts from the previous study's best")
    heartbeat_interval: int = Field(10, ge=1, description="seconds; a dead trial is failed and retried")
    grace_period: int = Field(30, ge=1, description="seconds without heartbeat before a trial is stale")
    max_retry: int = Field(2, ge=0, description="retries of a trial whose process died")
    threads_per_worker: int | None = Field(1, ge=1, description="torch threads per trial process")
    space: dict[str, SearchParam] | None = Field(
        None, description="null: the data kind's default space (modelmill/kinds/<kind>.py SEARCH_SPACE)"
    )

    @field_validator("storage")
    @classmethod
    def _database_url(cls, value: SecretStr) -> SecretStr:
        if "://" not in value.get_secret_value():
            raise ValueError(
                "tune.storage must be an SQLAlchemy URL (sqlite:///optuna/optuna.db, postgresql://...)"
            )
        return value

    @field_validator("cluster")
    @classmethod
    def _cluster_address(cls, value: str | None) -> str | None:
        if value is None:
            return value
        kind, _, rest = value.partition(":")
        if kind == "local" and rest.isdigit() and int(rest) >= 1:
            return value
        if kind in ("tcp", "tls") and rest.startswith("//") and rest[2:].rpartition(":")[2].isdigit():
            return value
        raise ValueError(f"'{value}' is not local:N (N >= 1) or tcp://HOST:PORT (a dask scheduler)")

    @field_validator("space")
    @classmethod
    def _keys_are_settings(cls, space: dict[str, SearchParam] | None) -> dict[str, SearchParam] | None:
        if space is None:
            return None
        if not space:
            raise ValueError("the search space is empty")
        for key, param in space.items():
            section, leaf = _config_section(key)
            for value in param.candidates():
                try:
                    section.model_validate({leaf: value})
                except ValidationError as exc:
                    reason = "; ".join(err["msg"] for err in exc.errors())
                    raise ValueError(f"'{key}': value {value!r} is not allowed ({reason})") from None
        return space

    def space_for(self, kind_space: dict[str, Any]) -> dict[str, SearchParam]:
        """The configured space, or (tune.space: null) the data kind's default one."""
        if self.space is not None:
            return self.space
        return {key: SearchParam.model_validate(p) for key, p in kind_space.items()}


def _config_section(key: str) -> tuple[type[BaseModel], str]:
    """The section model and leaf name of a dotted key (`model.tabular.width`); not under tune."""
    *parents, leaf = key.split(".")
    node: Any = Settings
    for part in parents:
        field = node.model_fields.get(part) if part != "tune" or node is not Settings else None
        node = field.annotation if field is not None else None
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            break
    if not parents or not isinstance(node, type) or leaf not in getattr(node, "model_fields", {}):
        raise ValueError(f"'{key}' is not a configuration key (expected e.g. train.learning_rate)")
    section = cast(type[BaseModel], node)  # a model: it has model_fields
    annotation = section.model_fields[leaf].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        raise ValueError(f"'{key}' is a section, not a value")
    return section, leaf


class OpsConfig(_Section):
    timezone: str = Field("UTC", description="IANA timezone of the nightly-retrain cron schedule")
    alert_webhook_url: BearerUrl | None = Field(
        None, description="POSTed a JSON failure summary when a flow run fails"
    )
    skip_unchanged: bool = Field(
        True, description="reuse the last run when data, config and code are unchanged"
    )


# --- drift and augmentation (issue 17) ------------------------------------------------------


class DriftConfig(_Section):
    """Drift between the champion's training data and new data (or live inputs)."""

    enabled: bool = Field(True, description="run the drift stage in `retrain` when there is a champion")
    alpha: float = Field(0.05, gt=0, lt=1, description="false-positive rate (Benjamini-Hochberg)")
    permutations: int = Field(300, ge=19, description="permutations of the MMD test")
    max_items: int = Field(1000, ge=10, description="items drawn per side (bounds the time)")
    features: bool = Field(True, description="per-feature tests for tabular data")
    seed: int = 0
    on_drift: Literal["warn", "retrain", "fail"] = Field(
        "warn", description="warn: report, train as usual; retrain: train only on drift; fail: fail the run"
    )


class ImageAugment(_Section):
    """Random transforms of (N, C, H, W) images in [0, 1], fresh for every training batch."""

    rotation: float = Field(0.0, ge=0, le=180, description="max degrees, either way")
    scale: float = Field(0.0, ge=0, lt=1, description="max relative zoom, either way (0.1: 0.9-1.1)")
    translate: float = Field(0.0, ge=0, le=0.5, description="max shift, fraction of width / height")
    crop: float = Field(0.0, ge=0, lt=1, description="max area fraction cut away, the rest resized back")
    noise: float = Field(0.0, ge=0, le=1, description="std of Gaussian pixel noise")
    erasing: float = Field(0.0, ge=0, le=1, description="probability of erasing one rectangle")
    erasing_area: float = Field(0.2, gt=0, lt=1, description="max area fraction of that rectangle")
    p: float = Field(
        0.5, gt=0, le=1, description="share of the images transformed, the rest unchanged (kornia's p)"
    )


class TabularAugment(_Section):
    """Noise on numeric features (in their preprocessed units) and mixup of rows and labels."""

    noise: float = Field(0.0, ge=0, description="std of Gaussian noise on numeric features")
    mixup: float = Field(0.0, ge=0, description="alpha of Beta(alpha, alpha) mixing weights; 0: off")


class TextAugment(_Section):
    word_dropout: float = Field(0.0, ge=0, lt=1, description="probability of dropping each word")
    word_swap: float = Field(0.0, ge=0, le=1, description="probability of swapping each adjacent pair")


class AugmentConfig(_Section):
    """Augmentation of training batches only, on the fly, seeded by (seed, batch number)."""

    enabled: bool = False
    seed: int | None = Field(None, description="None: train.seed")
    image: ImageAugment = ImageAugment()
    tabular: TabularAugment = TabularAugment()
    text: TextAugment = TextAugment()


class ServeConfig(_Section):
    """`modelmill serve`: how often the champion alias is polled and what a request may be."""

    poll_seconds: float = Field(2.0, gt=0, description="seconds between polls of the champion alias")
    max_request_bytes: int = Field(8 * 1024**2, ge=1024, description="largest request body accepted")
    max_batch: int = Field(10_000, ge=1, description="most rows (inputs) in one request")
    cache_dir: str = Field(".modelmill/serve", description="immutable per-version model folders")
    onnx_at_load: bool = Field(
        True, description="export a float model to ONNX at load, served by onnxruntime when its logits match"
    )
    log_inputs: bool = Field(False, description="keep the raw inputs /predict scored (for drift)")
    inputs_dir: str = Field(".modelmill/serving/inputs", description="rotating Parquet files of inputs")
    log_rows_per_file: int = Field(10_000, ge=1, description="rows per inputs file")
    log_max_files: int = Field(100, ge=1, description="inputs files kept (the oldest removed)")
    log_flush_seconds: float = Field(10.0, gt=0, description="most seconds before pending inputs are written")


class Settings(_Section):
    data: DataConfig = DataConfig()
    validation: ValidationConfig = ValidationConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    gate: GateConfig = GateConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    registry: RegistryConfig = RegistryConfig()
    tracking: TrackingConfig = TrackingConfig()
    compress: CompressConfig = CompressConfig()
    labels: LabelsConfig = LabelsConfig()
    tune: TuneConfig = TuneConfig()
    ops: OpsConfig = OpsConfig()
    drift: DriftConfig = DriftConfig()
    augment: AugmentConfig = AugmentConfig()
    serve: ServeConfig = ServeConfig()

    def flat(self) -> dict[str, Any]:
        """The resolved configuration as dotted keys, secrets masked (for MLflow params)."""
        return dict(_flatten(self.model_dump(mode="json")))

    def private_json(self) -> str:
        """JSON with the secrets in clear: only for handing the settings to a worker process."""
        return self.model_dump_json(context=REVEAL)

    def secret_values(self) -> list[str]:
        """Every configured secret in clear (to redact them from free text)."""
        values = [self.tracking.uri, self.tune.storage, self.ops.alert_webhook_url]
        return [v.get_secret_value() for v in values if v is not None]

    def redact(self, text: str) -> str:
        """`text` with every configured secret masked (log lines, error messages, CLI output)."""
        return redact(text, self.secret_values())

    def override(self, overrides: dict[str, Any]) -> Settings:
        """A copy with dotted-key overrides applied (`{"train.epochs": 2}`); None values skipped."""
        tree = self.model_dump(mode="json", context=REVEAL)
        for dotted, value in overrides.items():
            if value is None:
                continue
            node = tree
            *parents, leaf = dotted.split(".")
            for key in parents:
                if not isinstance(node.get(key), dict):
                    raise ConfigError(f"unknown configuration key '{dotted}'")
                node = node[key]
            if leaf not in node:
                raise ConfigError(f"unknown configuration key '{dotted}'")
            node[leaf] = value
        return _validate(tree, source="overrides")


def _flatten(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _validate(tree: Any, source: str) -> Settings:
    try:
        return Settings.model_validate(tree or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read params.yaml (defaults when the file is absent) and apply dotted overrides."""
    tree: Any = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: configuration file not found")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    settings = _validate(tree, source=str(path or "defaults"))
    return settings.override(overrides) if overrides else settings


DEFAULT_CONFIG = "params.yaml"


def load_project_settings(
    project_dir: str | Path, config: str = DEFAULT_CONFIG, overrides: dict[str, Any] | None = None
) -> Settings:
    """The one settings loader of every flow and command: `config` relative to the project;
    the default file may be absent (built-in defaults), any other must exist."""
    path = Path(project_dir, config)
    return load_settings(path if path.exists() or config != DEFAULT_CONFIG else None, overrides)
