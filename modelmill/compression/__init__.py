"""Compression of a trained ConvNet: int8 quantization, pruning, distillation, ONNX export,
each variant measured on the test split and the best one within an accuracy budget selected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from modelmill.compression import methods
from modelmill.compression.measure import VariantRow, compare_to_baseline, interleaved_latency_ms, measure
from modelmill.compression.methods import Variant
from modelmill.compression.onnx_export import OnnxParity, check_parity, export_onnx
from modelmill.compression.report import markdown, plot_size_vs_accuracy, table
from modelmill.compression.selection import Selection, select_variant
from modelmill.compression.storage import Architecture, Recipe, architecture_of, load, save, to_bytes
from modelmill.config import CompressConfig, TrainConfig
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


def planned_variants(cfg: CompressConfig) -> list[str]:
    """Names of the variants `build_variants` makes for this configuration (for progress)."""
    names = ["float"]
    names += ["dynamic_int8"] if cfg.dynamic_int8 else []
    names += ["static_int8"] if cfg.static_int8 else []
    names += [f"pruned_{round(s * 100)}" for s in (cfg.sparsities if cfg.prune else [])]
    if cfg.distill:
        names += ["distilled"] + (["distilled_static_int8"] if cfg.quantize_student else [])
    return names


def build_variants(
    teacher: nn.Module,
    arch: Architecture,
    splits: dict[str, XY],
    cfg: CompressConfig,
    train_cfg: TrainConfig,
    on_variant: Callable[[str], None] | None = None,
) -> tuple[list[Variant], dict[str, str]]:
    """The float baseline and every configured variant; methods the backend lacks are skipped.
    `on_variant(name)` is called as each one is ready (progress)."""
    train_xy, val_xy = splits["train"], splits["val"]
    variants: list[Variant] = []
    skipped: dict[str, str] = {}

    def add(variant: Variant) -> Variant:
        variants.append(variant)
        if on_variant is not None:
            on_variant(variant.name)
        return variant

    add(methods.baseline(teacher, arch))
    if cfg.dynamic_int8:
        add(methods.dynamic_int8(teacher, arch))
    if cfg.static_int8:
        try:
            add(methods.static_int8(teacher, arch, train_xy[0], cfg))
        except CompressionError as exc:
            skipped["static_int8"] = str(exc)
    for sparsity in cfg.sparsities if cfg.prune else []:
        add(methods.pruned(teacher, arch, sparsity, train_xy, val_xy, cfg, train_cfg))
    if cfg.distill:
        student = add(methods.distilled(teacher, arch, train_xy, val_xy, cfg, train_cfg))
        if cfg.quantize_student and "static_int8" not in skipped:
            add(methods.quantized_student(student, train_xy[0], cfg))
    return variants, skipped


def compress(
    teacher: nn.Module,
    image_shape: tuple[int, int],
    splits: dict[str, XY],
    classes: list[str],
    cfg: CompressConfig,
    train_cfg: TrainConfig,
    on_variant: Callable[[str], None] | None = None,
) -> CompressionReport:
    """Build, measure (same run, same test split, fixed threads, latency timed interleaved) and
    select on the validation split's accuracy; export the choice to ONNX."""
    arch = architecture_of(teacher, image_shape)
    variants, skipped = build_variants(teacher, arch, splits, cfg, train_cfg, on_variant)
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
    try:
        report.onnx_model = export_onnx(variant.module, variant.arch.image_shape)
    except CompressionError as exc:
        report.onnx_error = str(exc)
        return
    report.onnx = check_parity(report.onnx_model, variant.module, x)
