"""Compression of a trained model of any family: int8 quantization, pruning, distillation, ONNX
export, each where it applies, measured on the test split; the best within an accuracy budget selected."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from modelmill.compression.applicability import enabled, not_applicable, plan
from modelmill.compression.budget import TimeBudget
from modelmill.compression.measure import VariantRow, compare_to_baseline, interleaved_latency_ms
from modelmill.compression.methods import Variant
from modelmill.compression.onnx_export import OnnxParity, check_parity, export_onnx
from modelmill.compression.report import markdown, plot_size_vs_accuracy, table
from modelmill.compression.schedule import Schedule
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
    "TimeBudget",
    "Variant",
    "VariantRow",
    "architecture_of",
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
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds (compression.schedule)
    budget: TimeBudget | None = None
    samples: list[dict[int, list[float]]] = field(default_factory=list)  # per row: measure's latency call
    notes: dict[str, str] = field(default_factory=dict)  # variant -> how it was built (a subset)

    @property
    def chosen(self) -> Variant | None:
        return self.variants.get(self.selection.chosen) if self.selection.chosen else None

    def row(self, name: str) -> VariantRow:
        return next(r for r in self.rows if r.name == name)


def planned_variants(cfg: CompressConfig, spec: dict[str, Any] | None = None) -> list[str]:
    """Names of the variants `compress` makes for this configuration and model when its time
    budget affords them all (for progress)."""
    run = plan(spec, cfg)[0] if spec is not None else enabled(cfg)
    names = ["float"]
    names += ["dynamic_int8"] if "dynamic_int8" in run else []
    names += ["static_int8"] if "static_int8" in run else []
    names += [f"pruned_{round(s * 100)}" for s in (sorted(cfg.sparsities) if "prune" in run else [])]
    if "distill" in run:
        names += ["distilled"] + (
            ["distilled_static_int8"] if cfg.quantize_student and "static_int8" in run else []
        )
    return names


def compress(
    teacher: nn.Module,
    splits: dict[str, XY],
    classes: list[str],
    cfg: CompressConfig,
    train_cfg: TrainConfig,
    on_variant: Callable[[str], None] | None = None,
    text: TextModelConfig | None = None,
    budget: TimeBudget | None = None,
) -> CompressionReport:
    """Build in order and measure (same run, same test split, fixed threads, latency timed
    interleaved) the variants that apply to the model's family and that the time `budget`
    affords (none: every one, as configured); select on the validation split's accuracy; export
    the choice to ONNX. `text` is the text kind's fine-tuning config (its student trains like
    the teacher did). `on_variant(name)` is called as each variant is ready (progress)."""
    budget = budget or TimeBudget(None)
    schedule = Schedule(
        teacher, architecture_of(teacher), splits, classes, cfg, train_cfg, text, budget, on_variant
    )
    schedule.run()
    variants, unselected = (
        {v.name: v for v in schedule.variants},
        Selection(None, cfg.budget_points, cfg.select_by),
    )
    report = CompressionReport(
        schedule.rows,
        unselected,
        variants,
        schedule.skipped,
        timings=schedule.timings,
        budget=budget,
        notes=schedule.notes,
        samples=schedule.samples,
    )
    x = splits["test"][0]
    margin = schedule.margin()
    if cfg.select_by == "size":  # the choice does not wait for latency: ONNX first, timing in what is left
        select_and_export(report, cfg, x)
        time_latency(report, cfg, x, budget.deadline(keep=margin))
    else:
        time_latency(report, cfg, x, budget.deadline(keep=margin + schedule.onnx_seconds()))
        select_and_export(report, cfg, x)
    compare_to_baseline(report.rows, report.rows[0])
    return report


def time_latency(
    report: CompressionReport, cfg: CompressConfig, x: torch.Tensor, deadline: float | None
) -> None:
    tick = time.perf_counter()
    modules = [v.module for v in report.variants.values()]
    latencies = interleaved_latency_ms(modules, x, cfg, deadline, report.samples or None)
    for row, latency in zip(report.rows, latencies, strict=True):
        row.latency_ms = latency
    report.timings["latency"] = time.perf_counter() - tick


def select_and_export(report: CompressionReport, cfg: CompressConfig, x: torch.Tensor) -> None:
    """The budget rule's choice, exported to ONNX (onnxruntime parity) while the time budget lasts."""
    tick, budget = time.perf_counter(), report.budget or TimeBudget(None)
    report.selection = select_variant(
        report.rows, "float", cfg.budget_points, cfg.select_by, cfg.serving_batch_size
    )
    if not cfg.onnx or report.chosen is None:
        return
    if budget.left() <= 0:
        report.onnx_error = f"ONNX export of {report.chosen.name}: {budget.reason()}"
        return
    attach_onnx(report, report.chosen, x)
    report.timings["onnx"] = time.perf_counter() - tick


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
