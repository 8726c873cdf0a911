"""Measured figures of a variant on the test split: quality, stored size, weights, CPU latency."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from modelmill.compression.methods import Variant
from modelmill.compression.storage import dense_size
from modelmill.config import CompressConfig
from modelmill.evaluation import evaluate_predictions
from modelmill.training import torch_threads

# one warm-up call per module and batch size, then at least MIN_ROUNDS timed rounds: a text
# encoder at batch 256 takes seconds per call on one thread, each extra round a few of them
WARMUP_RUNS = 1
MIN_ROUNDS = 2
COUNTED_WARMUP_MS = 500.0  # a warm-up call this long counts as the first round's (a text encoder at 256)
PREDICT_BATCH = 512
# token ids (right-padded) are predicted in batches of texts of similar length, each cut after its
# longest (modelmill.encoder.trimmed): the same outputs for about half the work on the review snippets
TEXT_PREDICT_BATCH = 64
LATENCY_SEED = 0  # the fixed sample of test items each latency batch is made of


@dataclass
class VariantRow:
    """One row of the compression table (all figures measured, none computed from formulas)."""

    name: str
    method: str
    accuracy: float
    macro_f1: float
    size_bytes: int  # the stored file: safetensors package + zlib
    dense_size_bytes: int  # plain safetensors of the state, uncompressed
    parameters: int
    nonzero_parameters: int
    latency_ms: dict[int, float]  # batch size -> median ms per batch
    settings: dict[str, Any] = field(default_factory=dict)
    accuracy_delta_points: float = 0.0  # vs the float model, in points (negative = worse)
    size_ratio: float = 1.0
    speedup: dict[int, float] = field(default_factory=dict)  # float latency / this latency
    # accuracy on the validation split: what the budget rule selects on (test only reports)
    val_accuracy: float | None = None

    @property
    def selection_accuracy(self) -> float:
        return self.accuracy if self.val_accuracy is None else self.val_accuracy

    def flat(self) -> dict[str, Any]:
        """Scalar columns for a table or tracker (latency/speedup by batch size)."""
        row = {k: v for k, v in asdict(self).items() if k not in ("latency_ms", "speedup", "settings")}
        row.update({f"latency_ms_b{b}": v for b, v in self.latency_ms.items()})
        row.update({f"speedup_b{b}": v for b, v in self.speedup.items()})
        row["settings"] = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return row


def predicted_labels(variant: Variant, x: torch.Tensor, cfg: CompressConfig) -> torch.Tensor:
    """Labels of every row of x; token ids in batches sorted by length, returned in x's order."""
    if x.is_floating_point():
        order, size = torch.arange(len(x)), PREDICT_BATCH
    else:
        order, size = torch.argsort((x != 0).sum(1), descending=True, stable=True), TEXT_PREDICT_BATCH
    with torch_threads(cfg.threads), torch.inference_mode():
        sorted_x = x[order]
        labels = torch.cat([variant.module(sorted_x[s : s + size]).argmax(1) for s in range(0, len(x), size)])
    return torch.empty_like(labels).scatter_(0, order, labels)


def measure(
    variant: Variant,
    test_xy: tuple[torch.Tensor, torch.Tensor],
    classes: list[str],
    cfg: CompressConfig,
    latency: dict[int, float] | None = None,
    val_xy: tuple[torch.Tensor, torch.Tensor] | None = None,
    forward_seconds: list[float] | None = None,
    samples: dict[int, list[float]] | None = None,
) -> VariantRow:
    """The row of one variant; `latency` when timed with the others (interleaved_latency_ms; {}:
    filled in later); with `val_xy`, its validation accuracy too (the one selection may look at).
    `forward_seconds` gets the seconds of its forward passes appended (the time budget plans on them).
    With `samples`, a test split no larger than the largest latency batch is predicted by one timed
    call on that batch (it holds every test item), kept there as that size's first latency sample."""
    x, y = test_xy
    storing = threading.Thread(target=variant.stored)  # zlib lets go of the GIL: it deflates beside
    storing.start()
    tick = time.perf_counter()
    predicted = split_labels(variant, x, cfg, samples)
    val_accuracy = None
    if val_xy is not None:
        val_accuracy = float((predicted_labels(variant, val_xy[0], cfg) == val_xy[1]).float().mean())
    if forward_seconds is not None:
        forward_seconds.append(time.perf_counter() - tick)
    storing.join()
    latency = interleaved_latency_ms([variant.module], x, cfg)[0] if latency is None else latency
    report = evaluate_predictions(y.numpy(), predicted.numpy(), classes)
    total, nonzero = weight_counts(variant.module)
    return VariantRow(
        variant.name,
        variant.method,
        report.accuracy,
        report.macro_f1,
        size_bytes=len(variant.stored()),
        dense_size_bytes=dense_size(variant.module),
        parameters=total,
        nonzero_parameters=nonzero,
        latency_ms=latency,
        settings=dict(variant.settings),
        val_accuracy=val_accuracy,
    )


def split_labels(
    variant: Variant, x: torch.Tensor, cfg: CompressConfig, samples: dict[int, list[float]] | None
) -> torch.Tensor:
    """The test split's labels; from the largest latency batch's timed call when it holds the split
    (batch_of: the split, cycled), that call's ms recorded in `samples` (a warm-up: counted as a
    round's sample only when COUNTED_WARMUP_MS or longer)."""
    size = max(cfg.latency_batch_sizes)
    if samples is None or len(x) > size:
        return predicted_labels(variant, x, cfg)
    with torch_threads(cfg.threads), torch.inference_mode():
        tick = time.perf_counter()
        logits = variant.module(batch_of(x, size))
        samples[size] = [(time.perf_counter() - tick) * 1000]
    labels: torch.Tensor = logits[: len(x)].argmax(1)
    return labels


def compare_to_baseline(rows: list[VariantRow], baseline: VariantRow) -> None:
    """Fill accuracy delta (points), size ratio and speedups against the float model."""
    for row in rows:
        row.accuracy_delta_points = round((row.accuracy - baseline.accuracy) * 100, 4)
        row.size_ratio = row.size_bytes / baseline.size_bytes
        row.speedup = {b: baseline.latency_ms[b] / row.latency_ms[b] for b in row.latency_ms}


def batch_of(x: torch.Tensor, size: int) -> torch.Tensor:
    """`size` test items: a fixed (seeded) sample of them, every one (cycled) when the split is smaller."""
    if len(x) > size:
        return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(LATENCY_SEED))[:size]]
    repeats = -(-size // len(x))
    return x.repeat(repeats, *([1] * (x.dim() - 1)))[:size].contiguous()


def interleaved_latency_ms(
    modules: list[nn.Module],
    x: torch.Tensor,
    cfg: CompressConfig,
    deadline: float | None = None,
    first: list[dict[int, list[float]]] | None = None,
) -> list[dict[int, float]]:
    """Median ms per batch of each module at each batch size, timed in alternating rounds
    (every module once per round) so that a change in machine load hits all of them alike;
    compress.latency_repeats rounds, fewer (at least 2) once compress.latency_seconds have passed
    or another round would end past `deadline` (a time.perf_counter reading: the time budget).
    A warm-up call of COUNTED_WARMUP_MS or more is kept as that module's first-round sample;
    `first[i][size]`: module i's call at that size already made (measure's test call): its warm-up."""
    batches = {size: batch_of(x, size) for size in cfg.latency_batch_sizes}
    timings: list[dict[int, list[float]]] = [{size: [] for size in batches} for _ in modules]
    with torch_threads(cfg.threads), torch.inference_mode():
        for i, (module, timing) in enumerate(zip(modules, timings, strict=True)):
            for size, batch in batches.items():
                made = (first[i] if first else {}).get(size)
                warmup_ms = made[0] if made else [call_ms(module, batch) for _ in range(WARMUP_RUNS)][-1]
                if warmup_ms >= COUNTED_WARMUP_MS:  # first-call effects are milliseconds: a sample
                    timing[size].append(warmup_ms)
        started = time.perf_counter()
        for done in range(1, cfg.latency_repeats + 1):
            for module, timing in zip(modules, timings, strict=True):
                for size, batch in batches.items():
                    if len(timing[size]) < done:  # a counted warm-up is this round's call
                        timing[size].append(call_ms(module, batch))
            now = time.perf_counter()
            over = now - started > cfg.latency_seconds or (
                deadline is not None and now + (now - started) / done > deadline
            )
            if done >= MIN_ROUNDS and over:
                break  # a large model or a spent budget: fewer rounds, the same alternation
    return [{size: statistics.median(t) for size, t in timing.items()} for timing in timings]


def call_ms(module: nn.Module, batch: torch.Tensor) -> float:
    tick = time.perf_counter()
    module(batch)
    return (time.perf_counter() - tick) * 1000


def weight_counts(module: nn.Module) -> tuple[int, int]:
    """(weights and biases, non-zero ones), float or quantized; BN running stats and
    quantization scales/zero points are not counted."""
    total = nonzero = 0
    for key, value in module.state_dict().items():
        leaf = key.rsplit(".", 1)[-1]
        tensors = [t for t in value if isinstance(t, torch.Tensor)] if isinstance(value, tuple) else [value]
        if leaf not in ("weight", "bias", "_packed_params"):
            continue
        for tensor in tensors:
            values = tensor.dequantize() if tensor.is_quantized else tensor
            total += values.numel()
            nonzero += int(torch.count_nonzero(values))
    return total, nonzero
