"""Compression of the text kind's model: dynamic int8 of its linear layers and a distilled student
(the teacher's embeddings and its first layers, fewer of them), measured side by side on the test
split: macro-F1, stored size, latency per batch. Not yet wired into the compress stage."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import save as dump_safetensors
from torch import nn

from modelmill.compression.measure import interleaved_latency_ms
from modelmill.compression.methods import distillation_loss
from modelmill.config import CompressConfig, TextModelConfig, TrainConfig
from modelmill.encoder import TextClassifier
from modelmill.evaluation.metrics import evaluate_model
from modelmill.text_training import finetune

XY = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TextVariant:
    name: str
    module: nn.Module
    size_bytes: int
    settings: dict[str, Any]


def float_size(module: nn.Module) -> int:
    return len(dump_safetensors({k: v.contiguous() for k, v in module.state_dict().items()}))


def int8_size(module: nn.Module) -> int:
    """Bytes of the state: int8 weights one byte each (packed linear params included), the rest as stored."""
    total = 0
    for value in module.state_dict().values():
        tensors = [t for t in value if isinstance(t, torch.Tensor)] if isinstance(value, tuple) else [value]
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * (1 if tensor.is_quantized else tensor.element_size())
    return total


def dynamic_int8(teacher: nn.Module) -> TextVariant:
    """torch's dynamic quantization of every nn.Linear (weights int8, activations per batch)."""
    quantized = torch.ao.quantization.quantize_dynamic(
        copy.deepcopy(teacher).eval(), {nn.Linear}, torch.qint8
    )
    return TextVariant("dynamic_int8", quantized, int8_size(quantized), {"layers": "nn.Linear"})


def student_of(teacher: TextClassifier, layers: int) -> TextClassifier:
    """A student with `layers` transformer layers: the teacher's embeddings, its first layers, its head."""
    spec = teacher.spec
    encoder = {**spec["encoder"], "layers": layers}
    student = TextClassifier(
        encoder, int(spec["num_classes"]), int(spec["head_hidden"]), float(spec["dropout"])
    )
    state = {k: v for k, v in teacher.state_dict().items() if k in student.state_dict()}
    student.load_state_dict(state, strict=True)
    return student


def distilled(
    teacher: TextClassifier,
    train_xy: XY,
    val_xy: XY,
    cfg: CompressConfig,
    train_cfg: TrainConfig,
    text: TextModelConfig,
    layers: int = 2,
) -> TextVariant:
    """The student fine-tuned on the teacher's soft targets (temperature, alpha: compress: keys)."""
    student = student_of(teacher, layers)
    loss = distillation_loss(teacher.eval(), cfg.temperature, cfg.alpha)
    epochs = cfg.distill_epochs or text.finetune_epochs
    result = finetune(
        student, train_xy, val_xy, train_cfg, text.model_copy(update={"finetune_epochs": epochs}), loss=loss
    )
    settings = {"layers": layers, "epochs": epochs, "temperature": cfg.temperature, "alpha": cfg.alpha}
    return TextVariant(f"distilled_{layers}_layers", result.model, float_size(result.model), settings)


def measure_variants(
    variants: list[TextVariant], test: XY, classes: list[str], cfg: CompressConfig
) -> list[dict[str, Any]]:
    """Per variant: macro-F1, accuracy, size and latency (ms per batch, timed interleaved), with
    ratios to the first one (the float teacher)."""
    latencies = interleaved_latency_ms([v.module for v in variants], test[0], cfg)
    rows: list[dict[str, Any]] = []
    for variant, latency in zip(variants, latencies, strict=True):
        report = evaluate_model(variant.module, *test, classes)
        rows.append(
            {"variant": variant.name, "macro_f1": report.macro_f1, "accuracy": report.accuracy,
             "size_bytes": variant.size_bytes, **{f"latency_ms_b{b}": ms for b, ms in latency.items()}}
        )  # fmt: skip
    base: dict[str, float] = {k: v for k, v in rows[0].items() if isinstance(v, int | float)}
    for row in rows:
        row["size_ratio"] = base["size_bytes"] / row["size_bytes"]
        row["f1_drop_points"] = 100 * (base["macro_f1"] - row["macro_f1"])
        for key in [k for k in row if k.startswith("latency_ms_b")]:
            row[f"speedup_b{key.removeprefix('latency_ms_b')}"] = base[key] / row[key]
    return rows
