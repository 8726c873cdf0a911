"""The variants built in order, cheapest and likeliest winners first, each measured as it is ready,
within the stage's time budget: what the budget cannot afford is skipped with the reason."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from modelmill.compression import methods
from modelmill.compression.applicability import plan
from modelmill.compression.budget import TimeBudget
from modelmill.compression.measure import COUNTED_WARMUP_MS, MIN_ROUNDS, WARMUP_RUNS, VariantRow, measure
from modelmill.compression.methods import Variant
from modelmill.compression.storage import Architecture
from modelmill.compression.subset import Subset, sample, subset_of
from modelmill.config import CompressConfig, TextModelConfig, TrainConfig
from modelmill.errors import CompressionError

XY = tuple[torch.Tensor, torch.Tensor]
# fixed costs measured here (2 shared cores) on the small models, planned on before they are known
FX_SECONDS = 0.3  # FX prepare + convert, before the calibration batches
ONNX_SECONDS = 0.5  # the first export of a process (TorchScript trace + ONNX passes) + an ORT session
ONNX_SHARE = 0.15  # ... kept for it at most, of the budget (on tiny data it may not fit: skipped, said so)
MARGIN = 0.1  # of the budget, not planned on
STUDENT_EPOCHS = 5  # a student from scratch is not started with less (text students start from the teacher)


@dataclass
class Schedule:
    """Builds and measures (accuracy, size; latency is timed for all at the end) the variants of
    one teacher. Costs are planned from the float model's own measurement: each variant's
    finishing (its latency rounds, the ONNX export of the choice) is kept in reserve before the
    next one starts; fine-tuning and distillation epochs are planned at the budget's epoch time."""

    teacher: nn.Module
    arch: Architecture
    splits: dict[str, XY]
    classes: list[str]
    cfg: CompressConfig
    train_cfg: TrainConfig
    text: TextModelConfig | None = None
    budget: TimeBudget = field(default_factory=lambda: TimeBudget(None))
    on_variant: Callable[[str], None] | None = None
    variants: list[Variant] = field(default_factory=list)
    rows: list[VariantRow] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # method or variant -> why it did not run
    notes: dict[str, str] = field(default_factory=dict)  # variant -> how it was built (a subset)
    samples: list[dict[int, list[float]]] = field(default_factory=list)  # per variant: measure's latency call
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds
    measure_seconds: float = 0.0  # the float model's accuracy + size measurement
    item_seconds: float = 0.0  # the float model's forward time per item
    selection_val: XY | None = None  # the validation items selection looks at (a seeded sample)

    def add(self, variant: Variant, built_in: float, forward: list[float] | None = None) -> Variant:
        tick, (test, val) = time.perf_counter(), (self.splits["test"], self.selection_sample())
        samples: dict[int, list[float]] = {}
        row = measure(variant, test, self.classes, self.cfg, {}, val, forward, samples)
        self.timings[f"build {variant.name}"] = built_in
        self.timings["measure"] = self.timings.get("measure", 0.0) + time.perf_counter() - tick
        self.variants.append(variant)
        self.rows.append(row)
        self.samples.append(samples)
        if self.on_variant is not None:
            self.on_variant(variant.name)
        return variant

    def build(self, make: Callable[[], Variant]) -> Variant:
        tick = time.perf_counter()
        variant = make()
        return self.add(variant, time.perf_counter() - tick)

    def latency_each(self) -> float:
        """One variant's latency rounds at the least: a warm-up and MIN_ROUNDS at each batch size, a
        call less where the warm-up counts as a round (COUNTED_WARMUP_MS) and where the float model's
        measurement timed the call at that size already (at its duration)."""
        total = 0.0
        for size in self.cfg.latency_batch_sizes:
            made = self.samples[0].get(size) if self.samples else None
            call = made[0] / 1000 if made else self.item_seconds * size + 1e-3
            counted = call * 1000 >= COUNTED_WARMUP_MS
            total += (WARMUP_RUNS + MIN_ROUNDS - counted - (counted and made is not None)) * call
        return total

    def reserve(self, more: int) -> float:
        """Seconds kept for finishing after `more` further variants: their measurement, every
        variant's latency rounds, the ONNX export of the choice (at most ONNX_SHARE of the budget:
        on tiny data it runs in what is left or is skipped, said so) and the margin."""
        budget = self.budget.seconds or 0.0
        finish = (len(self.variants) + more) * self.latency_each() + min(
            self.onnx_seconds(), ONNX_SHARE * budget
        )
        return more * self.measure_seconds + finish + self.margin()

    def margin(self) -> float:
        """Seconds of the budget not planned on: the machine's noise, the last latency round."""
        return MARGIN * (self.budget.seconds or 0.0)

    def onnx_seconds(self) -> float:
        """The selected variant's ONNX export and its parity run on the test split (torch and ORT)."""
        return ONNX_SECONDS + 2 * self.item_seconds * len(self.splits["test"][1]) if self.cfg.onnx else 0.0

    def affords(self, name: str, seconds: float, more: int = 1) -> bool:
        """Whether `seconds` of work (and its finishing) fit; if not, `name` is listed as skipped."""
        if self.budget.affords(seconds + self.reserve(more)):
            return True
        self.skipped[name] = self.budget.reason()
        return False

    def baseline(self) -> None:
        """The float model, measured first: its costs are what the others are planned on."""
        tick, forward = time.perf_counter(), list[float]()
        self.add(methods.baseline(self.teacher, self.arch), 0.0, forward)
        self.measure_seconds = time.perf_counter() - tick
        items = len(self.splits["test"][1]) + len(self.selection_sample()[1])
        self.item_seconds = forward[0] / max(items, 1)

    def selection_sample(self) -> XY:
        """The validation split, or a seeded sample of compress.selection_items of it (the same for
        every variant): what selection compares; the test split is measured whole."""
        if self.selection_val is None:
            count, val = self.cfg.selection_items, self.splits["val"]
            self.selection_val = val if count is None else sample(val, count, self.train_cfg.seed)
        return self.selection_val

    def static_seconds(self) -> float:
        """A static int8 build: FX, then the calibration batches through the observed model."""
        calibration = self.cfg.calibration_batches * self.cfg.calibration_batch_size
        items = min(len(self.splits["train"][1]), calibration)
        return self.timings.get("build static_int8", FX_SECONDS + 3 * items * self.item_seconds)

    def run(self) -> None:
        run, self.skipped = plan(self.arch.spec, self.cfg)
        self.baseline()
        if "dynamic_int8" in run and self.affords("dynamic_int8", 0.0):
            self.build(lambda: methods.dynamic_int8(self.teacher, self.arch))
        if "static_int8" in run and self.affords("static_int8", self.static_seconds()):
            try:
                train_x = self.splits["train"][0]
                self.build(lambda: methods.static_int8(self.teacher, self.arch, train_x, self.cfg))
            except CompressionError as exc:
                self.skipped["static_int8"] = str(exc)
        distill_count = 0
        if "distill" in run:
            distill_count = 1 + (self.cfg.quantize_student and "static_int8" not in self.skipped)
        if "prune" in run:
            self.prune_levels(distill_count)
        if "distill" in run:
            self.distill(run)

    def training_seconds(self, more: int) -> float:
        return max(0.0, self.budget.left() - self.reserve(more))

    def prune_levels(self, distill_count: int) -> None:
        """One fine-tune shared across the levels: each starts from the previous, less sparse one.
        Half of what the budget has left goes to the levels when distillation follows; a level whose
        share is less than an epoch fine-tunes one epoch on a subset of the training split."""
        levels = sorted(self.cfg.sparsities)
        share = self.training_seconds(len(levels) + distill_count)
        share = share / 2 if distill_count else share
        until = time.perf_counter() + share
        start, start_name = self.teacher, "float"
        for done, sparsity in enumerate(levels):
            name, left = f"pruned_{round(sparsity * 100)}", until - time.perf_counter()
            epochs, deadline, fit = self.cfg.finetune_epochs, None, self.whole()
            if self.budget.bounded:
                per_level = left / (len(levels) - done)
                epochs, deadline = self.budget.epochs(per_level, epochs), until
                if left <= 0:
                    self.skipped[name] = self.budget.reason()
                    continue
                if self.cfg.finetune_epochs and not epochs:
                    subset = self.subset(name, per_level, 1)
                    if subset is None:
                        continue
                    epochs, fit = 1, subset
            tick = time.perf_counter()
            variant = methods.pruned(start, self.arch, sparsity, fit.train, fit.val, self.cfg, self.train_cfg,
                                     epochs, deadline, start_name)  # fmt: skip
            built, measuring = time.perf_counter() - tick, time.perf_counter()
            self.add(self.noted(variant, fit, "fine-tuned"), built)
            until += time.perf_counter() - measuring  # held in reserve, not the levels' share
            start, start_name = variant.module, variant.name

    def student_cost(self) -> float:
        """A distillation step per item relative to the teacher's training step: the text student
        trains its few layers (of the teacher's) and the teacher only predicts, once per item
        (memoised); the others (from scratch, the teacher run on every batch) are planned at 1."""
        if self.arch.family != "text" or not self.budget.epoch_seconds:
            return 1.0
        per_item = self.budget.epoch_seconds / max(len(self.splits["train"][1]), 1)
        layers = methods.student_architecture(self.arch, self.cfg).spec["encoder"]["layers"]
        share = int(layers) / int(self.arch.spec["encoder"]["layers"])
        return min(1.0, share + self.item_seconds / per_item)

    def whole(self) -> Subset:
        train = self.splits["train"]
        return Subset(train, self.splits["val"], len(train[1]), len(train[1]))

    def subset(self, name: str, seconds: float, epochs: int, cost: float = 1.0) -> Subset | None:
        """A seeded subset of the training split of which `epochs` epochs (each with its validation
        pass, at the float model's forward time per item) fit in `seconds`, validated on a seeded
        sample as large as the subset (or compress.min_subset_batches batches); None, and `name`
        listed as skipped with the count, when fewer than that many batches would fit. `cost`: an
        item's training step relative to the teacher's (student_cost)."""
        train, val = self.splits["train"], self.splits["val"]
        total, floor = len(train[1]), self.cfg.min_subset_batches * self.train_cfg.batch_size
        val_items = min(len(val[1]), max(floor, self.budget.items(seconds / cost, epochs, total)))
        items = self.budget.items((seconds - epochs * val_items * self.item_seconds) / cost, epochs, total)
        if items < min(floor, total):
            least = f"{floor} (compress.min_subset_batches x train.batch_size)" if floor < total else "all"
            fit = f"{items} of {total} training items would fit"
            self.skipped[name] = f"{self.budget.reason()[:-1]}; {fit}, fewer than {least})"
            return None
        return subset_of(train, val, items, min(val_items, max(floor, items)), self.train_cfg.seed)

    def noted(self, variant: Variant, fit: Subset, verb: str) -> Variant:
        """The variant with its subset recorded (setting `subset`, a note) when it trained on one."""
        if not fit.whole:
            variant.settings["subset"] = fit.setting()
            self.notes[variant.name] = fit.note(verb)
        return variant

    def distill(self, run: list[str]) -> None:
        static_why = self.skipped.get("static_int8", "")  # failed (not listed after it) or skipped
        budget_only = static_why[:15] in ("", "skipped: budget")
        listed = self.cfg.quantize_student and "static_int8" in run and budget_only
        quantize = listed and not static_why
        left = self.training_seconds(1 + quantize) - (self.static_seconds() if quantize else 0.0)
        at_most, cost = (
            methods.distill_epochs(self.arch, self.cfg, self.train_cfg, self.text),
            self.student_cost(),
        )
        epochs = self.budget.epochs(left / cost, at_most)
        least = 1 if self.arch.family == "text" else min(STUDENT_EPOCHS, at_most)
        fit = self.whole()
        if self.budget.bounded and (left <= 0 or epochs < least):
            subset = self.subset("distilled", left, least, cost) if left > 0 else None
            if subset is None:
                self.skipped.setdefault("distilled", self.budget.reason())
                if listed:
                    self.skipped["distilled_static_int8"] = self.skipped["distilled"]
                return
            fit, epochs = subset, least
        # the text schedule decays over the planned epochs; the others stop at the deadline
        planned = epochs if self.arch.family == "text" else at_most
        deadline = time.perf_counter() + left if self.budget.bounded else None
        student = self.build(lambda: self.noted(methods.distilled(
            self.teacher, self.arch, fit.train, fit.val, self.cfg, self.train_cfg,
            self.text, epochs=planned, deadline=deadline), fit, "distilled"))  # fmt: skip
        if listed and not quantize:
            self.skipped["distilled_static_int8"] = static_why
        elif quantize and self.affords("distilled_static_int8", self.static_seconds()):
            try:
                train_x = self.splits["train"][0]
                self.build(lambda: methods.quantized_student(student, train_x, self.cfg))
            except CompressionError as exc:
                self.skipped["distilled_static_int8"] = str(exc)
