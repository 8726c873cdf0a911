"""The compression methods: each takes the float teacher and returns named variants."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from modelmill.compression.storage import Architecture, Recipe, apply_recipe, to_bytes
from modelmill.config import CompressConfig, TextModelConfig, TrainConfig

if TYPE_CHECKING:
    from modelmill.training import LossFn

XY = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Variant:
    """A model to measure: the module as it runs, and how to store/rebuild it."""

    name: str
    method: str
    module: nn.Module
    arch: Architecture
    recipe: Recipe = field(default_factory=Recipe)
    settings: dict[str, Any] = field(default_factory=dict)
    payload: bytes | None = field(default=None, repr=False)

    def stored(self) -> bytes:
        """The stored bytes, serialized once: what is measured is what gets written."""
        if self.payload is None:
            self.payload = to_bytes(self.module, self.arch, self.recipe)
        return self.payload


def baseline(teacher: nn.Module, arch: Architecture) -> Variant:
    return Variant("float", "none", copy.deepcopy(teacher).cpu().eval(), arch)


def dynamic_int8(teacher: nn.Module, arch: Architecture) -> Variant:
    """Post-training dynamic int8 of the linear layers (weights int8, activations at run time)."""
    recipe = Recipe("dynamic_int8")
    return Variant("dynamic_int8", "dynamic_int8", apply_recipe(teacher, arch, recipe), arch, recipe)


def static_int8(
    teacher: nn.Module,
    arch: Architecture,
    train_x: torch.Tensor,
    cfg: CompressConfig,
    name: str = "static_int8",
    method: str = "static_int8",
) -> Variant:
    """FX graph mode static int8: conv-bn-relu fused, observers calibrated on training data."""
    recipe = Recipe("static_int8", cfg.backend)
    size = cfg.calibration_batch_size
    batches = [
        train_x[i : i + size] for i in range(0, min(len(train_x), size * cfg.calibration_batches), size)
    ]
    module = apply_recipe(teacher, arch, recipe, calibration=batches)
    return Variant(
        name,
        method,
        module,
        arch,
        recipe,
        {"backend": cfg.backend, "calibration_items": sum(len(b) for b in batches)},
    )


def pruned(
    start: nn.Module,
    arch: Architecture,
    sparsity: float,
    train_xy: XY,
    val_xy: XY,
    cfg: CompressConfig,
    train_cfg: TrainConfig,
    epochs: int | None = None,
    deadline: float | None = None,
    start_name: str = "float",
) -> Variant:
    """Global unstructured L1 pruning of conv+linear weights to `sparsity` of them, a short
    fine-tune (at most `epochs`, default compress.finetune_epochs; early stopping on the validation
    loss after compress.patience epochs without a gain; none started past `deadline`), then made
    permanent. `start` is the teacher or the previous, less sparse level (pruning shares one
    fine-tune across the levels): its zeros are the smallest weights, so they stay pruned and
    the level has the same count of zeros as when pruned from the teacher."""
    from modelmill.training import train

    module = copy.deepcopy(start).cpu()
    targets = [(m, "weight") for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)
    epochs = cfg.finetune_epochs if epochs is None else epochs
    epochs_run = 0
    if epochs:
        tune_cfg = train_cfg.model_copy(
            update={"epochs": epochs, "learning_rate": cfg.finetune_learning_rate,
                    "patience": min(cfg.patience, train_cfg.patience)}
        )  # fmt: skip
        result = train(module, train_xy, val_xy, tune_cfg, deadline=deadline)
        module, epochs_run = result.model, len(result.history)
    for m, name in targets:
        prune.remove(m, name)
    label = f"pruned_{round(sparsity * 100)}"
    settings = {"sparsity": sparsity, "finetune_epochs": epochs, "epochs_run": epochs_run, "from": start_name}
    return Variant(label, "prune", module.cpu().eval(), arch, settings=settings)


def distillation_loss(teacher: nn.Module, temperature: float, alpha: float, memo: bool = False) -> LossFn:
    """alpha * T^2 * KL(student_T || teacher_T) + (1 - alpha) * CE(student, labels). `memo`: the
    teacher's logits kept per distinct input row (the teacher is fixed, in eval mode: the same
    row gives the same logits), so each epoch after the first runs the student only."""
    seen: dict[bytes, torch.Tensor] = {}

    def teacher_logits(x: torch.Tensor) -> torch.Tensor:
        if not memo:
            out: torch.Tensor = teacher.to(x.device)(x)
            return out
        keys = [row.tobytes() for row in x.cpu().numpy()]
        missing = [i for i, k in enumerate(keys) if k not in seen]
        if missing:
            fresh = teacher.to(x.device)(x[missing]).cpu()
            seen.update((keys[i], fresh[j]) for j, i in enumerate(missing))
        return torch.stack([seen[k] for k in keys]).to(x.device)

    def loss(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            soft_targets = F.softmax(teacher_logits(x) / temperature, dim=1)
        soft = (
            F.kl_div(F.log_softmax(logits / temperature, dim=1), soft_targets, reduction="batchmean")
            * temperature**2
        )
        return alpha * soft + (1 - alpha) * F.cross_entropy(logits, y)

    return loss


def student_architecture(arch: Architecture, cfg: CompressConfig) -> Architecture:
    """A narrower model of the teacher's family: fewer conv channels and hidden units (ConvNet),
    fewer units per hidden layer (dense), fewer transformer layers (text)."""
    spec = copy.deepcopy(arch.spec)
    if arch.family == "convnet":
        spec["config"].update(
            width=cfg.student_width,
            hidden=cfg.student_hidden,
            depth=cfg.student_depth or spec["config"]["depth"],
        )
    elif arch.family == "dense":
        spec.update(
            width=cfg.student_dense_width or max(2, int(spec["width"]) // 4),
            depth=cfg.student_depth or int(spec["depth"]),
        )
    elif arch.family == "text":
        spec["encoder"]["layers"] = min(cfg.student_layers, int(spec["encoder"]["layers"]))
    return Architecture(spec)


def student_settings(student: Architecture) -> dict[str, Any]:
    """The student's size-defining arguments, for the table and the tracker."""
    spec = student.spec
    if student.family == "convnet":
        return {f"student_{k}": spec["config"][k] for k in ("width", "hidden", "depth")}
    if student.family == "dense":
        return {"student_width": spec["width"], "student_depth": spec["depth"]}
    return {"student_layers": spec["encoder"]["layers"]}


def distilled(
    teacher: nn.Module,
    arch: Architecture,
    train_xy: XY,
    val_xy: XY,
    cfg: CompressConfig,
    train_cfg: TrainConfig,
    text: TextModelConfig | None = None,
    epochs: int | None = None,
    deadline: float | None = None,
) -> Variant:
    """A narrower student of the teacher's family trained against its temperature-softened outputs
    (at most `epochs`, default compress.distill_epochs; early stopping on the validation loss, no
    epoch started past `deadline`); the text student starts from the teacher's own embeddings,
    first layers and head (modelmill.compression.text)."""
    student_arch = student_architecture(arch, cfg)
    teacher = copy.deepcopy(teacher).cpu().eval()
    epochs = epochs or distill_epochs(arch, cfg, train_cfg, text)
    loss = distillation_loss(teacher, cfg.temperature, cfg.alpha, memo=arch.family != "convnet")
    run_cfg = train_cfg.model_copy(
        update={"epochs": epochs, "patience": min(cfg.patience, train_cfg.patience)}
    )
    if arch.family == "text":
        from modelmill.compression.text import train_student

        result = train_student(teacher, student_arch, train_xy, val_xy, run_cfg, text, loss, deadline)
    else:
        from modelmill.training import train

        result = train(student_arch.build().train(), train_xy, val_xy, run_cfg, loss=loss, deadline=deadline)
    settings = {
        **student_settings(student_arch),
        "temperature": cfg.temperature,
        "alpha": cfg.alpha,
        "epochs": epochs,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
    }
    return Variant("distilled", "distill", result.model.cpu().eval(), student_arch, settings=settings)


def distill_epochs(
    arch: Architecture, cfg: CompressConfig, train_cfg: TrainConfig, text: TextModelConfig | None
) -> int:
    """compress.distill_epochs, or the teacher's own: train.epochs (text: model.text.finetune_epochs)."""
    teacher = (text or TextModelConfig()).finetune_epochs if arch.family == "text" else train_cfg.epochs
    return cfg.distill_epochs or teacher


def quantized_student(student: Variant, train_x: torch.Tensor, cfg: CompressConfig) -> Variant:
    variant = static_int8(
        student.module, student.arch, train_x, cfg, name="distilled_static_int8", method="distill+static_int8"
    )
    variant.settings = {**student.settings, **variant.settings}
    return variant
