"""Fine-tuning and distillation on a seeded subset of the training split when the compress stage's
time budget affords less than the epochs they need (issue 11); below the floor they are skipped."""

import re

import pytest
import torch
from torch import nn

from modelmill.compression import TimeBudget, compress
from modelmill.compression.schedule import Schedule
from modelmill.compression.storage import architecture_of
from modelmill.config import Settings
from tests.support.tables import dense_teacher, separable_table

SETTINGS = {
    "train.epochs": 6, "train.num_threads": 1, "train.device": "cpu", "train.learning_rate": 0.01,
    "train.batch_size": 16, "compress.sparsities": [0.5, 0.8], "compress.finetune_epochs": 2,
    "compress.distill_epochs": 3, "compress.latency_repeats": 2, "compress.latency_batch_sizes": [1, 64],
    "compress.serving_batch_size": 64, "compress.budget_points": 100.0, "compress.onnx": False,
}  # fmt: skip
CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings().override(SETTINGS)


@pytest.fixture(scope="module")
def splits():
    return separable_table()


@pytest.fixture(scope="module")
def teacher(settings, splits) -> nn.Module:
    return dense_teacher(splits, settings.train)


def schedule(teacher, splits, settings, budget: TimeBudget) -> Schedule:
    cfg = settings.compress
    return Schedule(teacher, architecture_of(teacher), splits, CLASSES, cfg, settings.train, budget=budget)


def test_items_of_an_epoch_that_fit():
    budget = TimeBudget(100.0, epoch_seconds=10.0)
    assert budget.items(5.0, 1, 600) == 300 and budget.items(5.0, 2, 600) == 150
    assert budget.items(50.0, 1, 600) == 600 and budget.items(-1.0, 1, 600) == 0
    assert TimeBudget(None, 10.0).items(1.0, 1, 600) == TimeBudget(100.0).items(1.0, 1, 600) == 600


def test_less_than_an_epoch_fine_tunes_and_distils_on_a_subset_and_says_so(teacher, splits, settings):
    # a 60 s epoch in a 120 s stage: each pruning level's share and the student's are less than
    # the epochs they need, more than the floor of 4 batches of 16
    report = compress(teacher, splits, CLASSES, settings.compress, settings.train,
                      budget=TimeBudget(120.0, epoch_seconds=60.0))  # fmt: skip
    assert [r.name for r in report.rows] == ["float", "dynamic_int8", "static_int8", "pruned_50",
                                             "pruned_80", "distilled", "distilled_static_int8"]  # fmt: skip
    for name, verb in (("pruned_50", "fine-tuned"), ("pruned_80", "fine-tuned"), ("distilled", "distilled")):
        items = int(re.fullmatch(r"(\d+) of 600 items", report.row(name).settings["subset"])[1])
        assert 64 <= items < 600, name
        assert re.fullmatch(
            rf"{verb} on {items:,} of 600 training items \(validated on \d+\)", report.notes[name]
        )
    assert report.row("pruned_50").settings["epochs_run"] == 1
    assert report.skipped == {}


def test_the_subset_is_seeded_same_size_and_items_twice(teacher, splits, settings):
    plan = schedule(teacher, splits, settings, TimeBudget(100.0, epoch_seconds=10.0))
    first, second = plan.subset("pruned_50", 5.0, 1), plan.subset("pruned_50", 5.0, 1)
    assert first is not None and second is not None
    assert first.items == second.items == 300 and first.of == 600
    assert torch.equal(first.train[0], second.train[0]) and torch.equal(first.val[0], second.val[0])
    assert not torch.equal(first.train[0], splits["train"][0][:300])  # a random draw, not the first rows
    rows = {tuple(r) for r in splits["train"][0].tolist()}
    assert all(tuple(r) in rows for r in first.train[0].tolist())  # items of the training split
    assert len(first.val[1]) == 150  # the whole validation split: smaller than the subset


def test_a_subset_below_the_floor_is_skipped_with_its_reason(teacher, splits, settings):
    plan = schedule(teacher, splits, settings, TimeBudget(100.0, epoch_seconds=10.0))
    assert plan.subset("pruned_50", 0.5, 1) is None  # 30 items, fewer than 4 batches of 16
    why = plan.skipped["pruned_50"]
    assert why.startswith("skipped: budget (") and "30 of 600 training items would fit" in why
    assert why.endswith("fewer than 64 (compress.min_subset_batches x train.batch_size))")
    tiny = {**splits, "train": (splits["train"][0][:50], splits["train"][1][:50])}  # the floor: the split
    assert (
        schedule(teacher, tiny, settings, TimeBudget(100.0, epoch_seconds=10.0)).subset("d", 9.0, 1) is None
    )
    # in the stage: a 1000 s epoch leaves each level and the student fewer items than the floor
    report = compress(teacher, splits, CLASSES, settings.compress, settings.train,
                      budget=TimeBudget(120.0, epoch_seconds=1000.0))  # fmt: skip
    assert [r.name for r in report.rows] == ["float", "dynamic_int8", "static_int8"]
    for name in ("pruned_50", "pruned_80", "distilled"):
        assert "training items would fit, fewer than" in report.skipped[name], name
    assert report.notes == {}


def test_selection_looks_at_a_seeded_sample_of_a_large_validation_split(teacher, splits, settings):
    def selection(count):
        cfg = settings.compress.model_copy(update={"selection_items": count})
        return Schedule(
            teacher, architecture_of(teacher), splits, CLASSES, cfg, settings.train
        ).selection_sample()

    first, again = selection(100), selection(100)
    assert len(first[1]) == 100 and torch.equal(first[0], again[0])
    assert not torch.equal(first[0], splits["val"][0][:100])
    assert selection(None) is splits["val"] and selection(5000) is splits["val"]
