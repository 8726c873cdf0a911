"""The text model's distilled student: fewer transformer layers, started from the teacher's own
embeddings, first layers and head, fine-tuned on the teacher's soft targets (the text model's
dynamic int8 is the common one of modelmill.compression.methods)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from modelmill.compression.storage import Architecture
from modelmill.config import TextModelConfig, TrainConfig
from modelmill.encoder import TextClassifier
from modelmill.text_training import finetune

if TYPE_CHECKING:
    from torch import nn

    from modelmill.training import LossFn, TrainResult

XY = tuple[torch.Tensor, torch.Tensor]


def student_of(teacher: nn.Module, layers: int) -> TextClassifier:
    """A student with `layers` transformer layers: the teacher's embeddings, its first layers, its head."""
    spec = dict(teacher.spec)  # type: ignore[arg-type]  # a TextClassifier's JSON spec
    encoder = {**spec["encoder"], "layers": layers}
    student = TextClassifier(
        encoder, int(spec["num_classes"]), int(spec["head_hidden"]), float(spec["dropout"])
    )
    state = {k: v for k, v in teacher.state_dict().items() if k in student.state_dict()}
    student.load_state_dict(state, strict=True)
    return student


def train_student(
    teacher: nn.Module,
    student: Architecture,
    train_xy: XY,
    val_xy: XY,
    cfg: TrainConfig,
    text: TextModelConfig | None,
    loss: LossFn,
    deadline: float | None = None,
) -> TrainResult:
    """Fine-tune the student (text fine-tuning's rates, warm-up and decay; cfg.epochs at most, early
    stopping on the validation loss) against `loss` (the distillation loss). The word embeddings
    stay the teacher's fine-tuned ones: most of a small student's weights, and of the optimizer's
    work per step."""
    text = (text or TextModelConfig()).model_copy(update={"finetune_epochs": cfg.epochs})
    model = student_of(teacher, int(student.spec["encoder"]["layers"]))
    model.encoder.word_embeddings.weight.requires_grad_(False)
    try:
        return finetune(model, train_xy, val_xy, cfg, text, loss=loss, deadline=deadline)
    finally:
        model.encoder.word_embeddings.weight.requires_grad_(True)
