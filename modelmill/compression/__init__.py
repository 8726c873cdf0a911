"""Compression of a trained model of any family: int8 quantization, pruning, distillation, ONNX
export, each where it applies, measured on the test split; the best within an accuracy budget selected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from modelmill.compression import methods
from modelmill.compression.applicability import enabled, not_applicable, plan
from modelmill.compression.measure import VariantRow, compare_to_baseline, interleaved_latency_ms, measure
from modelmill.compression.methods import Variant
from modelmill.compression.onnx_export import OnnxParity, check_parity, export_onnx
from modelmill.compression.report import markdown, plot_size_vs_accuracy, table
from modelmill.compression.selection import Selection, select_variant
from modelmill.compression.storage import Architecture, Recipe, architecture_of, load, save, to_bytes
from modelmill.config import CompressConfig, TextModelConfig, TrainConfig
from modelmill.errors import CompressionError

__all__ = [
    "Architecture",
    "CompressionReport",
    "OnnxParity",
    "Recipe",
    "Selection",
    "Variant",
    "VariantRow",
    "architecture_of",
    "build_variants",
    "compress",
    "load",
    "markdown",
    "not_applicable",
    "plot_size_vs_accuracy",
    "save",
    "select_variant",
    "table",
    "to_bytes",
]

XY = tuple[torch.Tensor, torch.Tensor]


@dataclass
class CompressionReport:
    rows: list[VariantRow]
    selection: Selection
    variants: dict[str, Variant]
    skipped: dict[str, str] = field(default_factory=dict)  # method -> why it did not run
    onnx: OnnxParity | None = None
    onnx_model: bytes | None = None
    onnx_error: str | None = None

    @property
    def chosen(self) -> Variant | None:
        return self.variants.get(self.selection.chosen) if self.selection.chosen else None

    def row(self, name: str) -> VariantRow:
        return next(r for r in self.rows if r.name == name)


def planned_variants(cfg: CompressConfig, spec: dict[str, Any] | None = None) -> list[str]:
    """Names of the variants `build_variants` makes for this configuration and model (for progress)."""
    run = plan(spec, cfg)[0] if spec is not None else enabled(cfg)
    names = ["float"]
    names += ["dynamic_int8"] if "dynamic_int8" in run else []
    names += ["static_int8"] if "static_int8" in run else []
    names += [f"pruned_{round(s * 100)}" for s in (cfg.sparsities if "prune" in run else [])]
    if "distill" in run:
        names += ["distilled"] + (
            ["distilled_static_int8"] if cfg.quantize_student and "static_int8" in run else []
        )
    return names


def build_variants(
    teacher: nn.Module,
    arch: Architecture,
    splits: dict[str, XY],
    cfg: CompressConfig,
    train_cfg: TrainConfig,
    on_variant: Callable[[str], None] | None = None,
    text: TextModelConfig | None = None,
) -> tuple[list[Variant], dict[str, str]]:
    """The float baseline and every configured variant that applies to the model's family
    (modelmill.compression.applicability); the others, and those that fail to build (static int8
    of a model FX cannot convert), are returned with the reason. `on_variant(name)` is called as
    each one is ready (progress)."""
    train_xy, val_xy = splits["train"], splits["val"]
    run, skipped = plan(arch.spec, cfg)
    variants: list[Variant] = []

    def add(variant: Variant) -> Variant:
        variants.append(variant)
        if on_variant is not None:
            on_variant(variant.name)
        return variant

    add(methods.baseline(teacher, arch))
    if "dynamic_int8" in run:
        add(methods.dynamic_int8(teacher, arch))
    if "static_int8" in run:
        try:
            add(methods.static_int8(teacher, arch, train_xy[0], cfg))
        except CompressionError as exc:
            skipped["static_int8"] = str(exc)
    for sparsity in cfg.sparsities if "prune" in run else []:
        add(methods.pruned(teacher, arch, sparsity, train_xy, val_xy, cfg, train_cfg))
    if "distill" in run:
        student = add(methods.distilled(teacher, arch, train_xy, val_xy, cfg, train_cfg, text))
        if cfg.quantize_student and "static_int8" in run and "static_int8" not in skipped:
            add(methods.quantized_student(student, train_xy[0], cfg))
    return variants, skipped


def compress(
    teacher: nn.Module,
    splits: dict[str, XY],
    classes: list[str],
    cfg: CompressConfig,
    train_cfg: TrainConfig,
    on_variant: Callable[[str], None] | None = None,
    text: TextModelConfig | None = None,
) -> CompressionReport:
    """Build, measure (same run, same test split, fixed threads, latency timed interleaved) and
    select on the validation split's accuracy; export the choice to ONNX. Every model family:
    `text` is the text kind's fine-tuning config (its student trains like the teacher did)."""
    arch = architecture_of(teacher)
    variants, skipped = build_variants(teacher, arch, splits, cfg, train_cfg, on_variant, text)
    latencies = interleaved_latency_ms([v.module for v in variants], splits["test"][0], cfg)
    rows = [
        measure(v, splits["test"], classes, cfg, latency, val_xy=splits["val"])
        for v, latency in zip(variants, latencies, strict=True)
    ]
    compare_to_baseline(rows, rows[0])
    selection = select_variant(rows, "float", cfg.budget_points, cfg.select_by, cfg.serving_batch_size)
    report = CompressionReport(rows, selection, {v.name: v for v in variants}, skipped)
    if cfg.onnx and report.chosen is not None:
        attach_onnx(report, report.chosen, splits["test"][0])
    return report


def attach_onnx(report: CompressionReport, variant: Variant, x: torch.Tensor) -> None:
    if variant.recipe.quantization == "dynamic_int8":  # known: the exporter fails (and prints its graph)
        report.onnx_error = f"ONNX export of {variant.name}: dynamic int8 Linear has no ONNX mapping"
        return
    try:
        report.onnx_model = export_onnx(variant.module, x[:1])
    except CompressionError as exc:
        report.onnx_error = str(exc)
        return
    report.onnx = check_parity(report.onnx_model, variant.module, x)
