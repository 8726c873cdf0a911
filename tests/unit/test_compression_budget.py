"""The compress stage's time budget (issue 11): what it skips is listed with the reason, no budget
builds every variant, and the pruning levels share one fine-tune with the same sparsities."""

import time

import pytest
from torch import nn

from modelmill.compression import TimeBudget, compress, methods, planned_variants
from modelmill.compression.storage import architecture_of
from modelmill.config import Settings
from modelmill.models import DenseNet
from modelmill.training import train
from tests.support.tables import dense_teacher, separable_table

SETTINGS = {
    "train.epochs": 6, "train.num_threads": 1, "train.device": "cpu", "train.learning_rate": 0.01,
    "compress.sparsities": [0.9, 0.5, 0.8], "compress.finetune_epochs": 2, "compress.distill_epochs": 3,
    "compress.latency_repeats": 3, "compress.latency_batch_sizes": [1, 64], "compress.serving_batch_size": 64,
    "compress.budget_points": 100.0,
}  # fmt: skip
EVERY = ["float", "dynamic_int8", "static_int8", "pruned_50", "pruned_80", "pruned_90", "distilled",
         "distilled_static_int8"]  # fmt: skip


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings().override(SETTINGS)


@pytest.fixture(scope="module")
def splits():
    return separable_table()


@pytest.fixture(scope="module")
def teacher(settings, splits) -> nn.Module:
    return dense_teacher(splits, settings.train)


def run(teacher, splits, settings, budget):
    return compress(teacher, splits, ["a", "b", "c"], settings.compress, settings.train, budget=budget)


def test_no_ratio_or_no_training_time_is_no_budget():
    for budget in (TimeBudget.from_training(None, 10.0), TimeBudget.from_training(0.0, 10.0),
                   TimeBudget.from_training(0.5, None)):  # fmt: skip
        assert not budget.bounded and budget.left() == float("inf") and budget.deadline() is None
        assert budget.epochs(0.0, 7) == 7
    budget = TimeBudget.from_training(0.5, 30.0, epochs_run=10)
    assert budget.bounded and budget.seconds == 15.0 and budget.epoch_seconds == 3.0
    assert budget.epochs(7.0, 5) == 2 and budget.epochs(100.0, 5) == 5 and budget.epochs(2.9, 5) == 0
    kept = budget.keeping(4.0)  # the task's logging after the variants
    assert kept.seconds == 11.0 and kept.started == budget.started and budget.keeping(20.0).seconds == 7.5


def test_without_a_budget_every_variant_is_built(teacher, splits, settings):
    report = run(teacher, splits, settings, TimeBudget.from_training(0.0, 1.0))
    assert [r.name for r in report.rows] == EVERY == planned_variants(settings.compress, report_spec(teacher))
    assert report.skipped == {}
    assert report.row("distilled").settings["epochs"] == 3


def test_a_spent_budget_keeps_the_float_model_and_lists_every_other_variant(teacher, splits, settings):
    report = run(teacher, splits, settings, TimeBudget(0.0))
    assert [r.name for r in report.rows] == ["float"]  # the fallback is always measured
    assert list(report.skipped) == EVERY[1:]
    for name, why in report.skipped.items():
        assert why.startswith("skipped: budget (") and why.endswith(" s of 0.0 s used)"), name
    assert report.selection.chosen is None and report.onnx_model is None
    assert report.rows[0].latency_ms.keys() == {1, 64}  # timed all the same (at least 2 rounds)


def test_epochs_the_budget_cannot_afford_skip_the_trained_variants_only(teacher, splits, settings):
    # minutes for the stage, but an epoch planned at 1000 s: int8 fits, no fine-tune or student does
    report = run(teacher, splits, settings, TimeBudget(120.0, epoch_seconds=1000.0))
    assert [r.name for r in report.rows] == ["float", "dynamic_int8", "static_int8"]
    assert set(report.skipped) == {
        "pruned_50",
        "pruned_80",
        "pruned_90",
        "distilled",
        "distilled_static_int8",
    }
    assert all(why.startswith("skipped: budget (") for why in report.skipped.values())
    assert report.selection.chosen in ("dynamic_int8", "static_int8")
    assert {"build static_int8", "measure", "latency"} <= set(report.timings)


def test_pruning_levels_share_one_fine_tune_with_the_sparsities_of_pruning_the_teacher(
    teacher, splits, settings
):
    report = run(teacher, splits, settings, None)
    arch, cfg = architecture_of(teacher), settings.compress
    weights = sum(m.weight.numel() for m in teacher.modules() if isinstance(m, nn.Linear))
    previous = "float"
    for sparsity in (0.5, 0.8, 0.9):
        name = f"pruned_{round(sparsity * 100)}"
        row = report.row(name)
        assert row.settings["from"] == previous  # ascending: each level starts from the last
        alone = methods.pruned(teacher, arch, sparsity, splits["train"], splits["val"], cfg, settings.train)
        assert zeros(report.variants[name].module) == zeros(alone.module) == round(sparsity * weights)
        previous = name


def test_training_stops_at_the_deadline_after_the_first_epoch(settings, splits):
    cfg = settings.train.model_copy(update={"epochs": 50, "patience": 50})
    model = DenseNet(6, 3, width=8, depth=1, dropout=0.0)
    result = train(model, splits["train"], splits["val"], cfg, deadline=time.perf_counter())
    assert len(result.history) == 1 and result.stopped_early


def zeros(module: nn.Module) -> int:
    return sum(int((m.weight == 0).sum()) for m in module.modules() if isinstance(m, nn.Linear))


def report_spec(teacher: nn.Module) -> dict:
    return architecture_of(teacher).spec
