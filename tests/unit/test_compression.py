"""Compression core on the real digits data with a tiny training budget: every figure measured."""

import pytest
import torch

from modelmill.compression import (
    Architecture,
    VariantRow,
    architecture_of,
    compress,
    load,
    markdown,
    plot_size_vs_accuracy,
    save,
    select_variant,
    table,
)
from modelmill.compression.methods import distillation_loss
from modelmill.compression.onnx_export import check_parity, export_onnx
from modelmill.config import ModelConfig, Settings
from modelmill.data import Dataset, digits, to_tensors
from modelmill.errors import CompressionError, ConfigError
from modelmill.models import build_model, spec_of
from modelmill.split import split_frame
from modelmill.training import seed_everything, train

TINY = {
    "train.epochs": 2,
    "train.patience": 2,
    "train.num_threads": 1,
    "train.device": "cpu",
    "compress.sparsities": [0.8],
    "compress.finetune_epochs": 1,
    "compress.distill_epochs": 2,
    "compress.student_width": 4,
    "compress.student_hidden": 16,
    "compress.calibration_batches": 2,
    "compress.latency_repeats": 3,
    "compress.latency_batch_sizes": [1, 64],
    "compress.serving_batch_size": 64,
    "compress.budget_points": 100.0,
}


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings().override(TINY)


@pytest.fixture(scope="module")
def splits(settings):
    ds = Dataset(digits.SCHEMA, *digits.load())
    return {
        name: to_tensors(frame, ds.schema)
        for name, frame in split_frame(ds.labeled(), settings.split).items()
    }


@pytest.fixture(scope="module")
def teacher(settings, splits):
    seed_everything(settings.train.seed)  # the initial weights must not depend on the test order
    model = build_model((8, 8), 10, ModelConfig(width=16, hidden=64))
    return train(model, splits["train"], splits["val"], settings.train).model


@pytest.fixture(scope="module")
def report(teacher, settings, splits):
    return compress(teacher, splits, list(digits.SCHEMA.classes), settings.compress, settings.train)


def test_every_method_yields_a_measured_variant(report, splits):
    assert [r.name for r in report.rows] == [
        "float",
        "dynamic_int8",
        "static_int8",
        "pruned_80",
        "distilled",
        "distilled_static_int8",
    ]
    x, y = splits["test"]
    base = report.row("float")
    for row in report.rows:
        with torch.inference_mode():
            predicted = report.variants[row.name].module(x).argmax(1)
        assert row.accuracy == pytest.approx((predicted == y).float().mean().item()), row.name
        delta = (row.accuracy - base.accuracy) * 100
        assert row.accuracy_delta_points == pytest.approx(delta, abs=1e-4), row.name  # rounded to 4 places
        assert set(row.latency_ms) == {1, 64} and all(v > 0 for v in row.latency_ms.values())
    assert report.skipped == {}


def test_sizes_are_the_saved_files(report, tmp_path):
    for name, variant in report.variants.items():
        path = tmp_path / f"{name}.pt.z"
        written = save(path, variant.stored())
        assert written == path.stat().st_size == report.row(name).size_bytes


def test_quantized_models_are_smaller_than_the_float_one(report):
    base = report.row("float")
    for name in ("dynamic_int8", "static_int8"):
        assert report.row(name).size_bytes < base.size_bytes
        assert report.row(name).dense_size_bytes < base.dense_size_bytes
    assert report.row("static_int8").size_bytes < report.row("dynamic_int8").size_bytes


def test_pruning_zeroes_weights_and_compressed_storage_shows_it(report):
    base, pruned = report.row("float"), report.row("pruned_80")
    assert pruned.parameters == base.parameters
    assert pruned.nonzero_parameters < 0.3 * base.parameters
    assert pruned.dense_size_bytes == base.dense_size_bytes  # zeros stored densely by safetensors
    assert pruned.size_bytes < 0.5 * base.size_bytes  # ... but they compress


def test_student_is_smaller(report):
    assert report.row("distilled").parameters < report.row("float").parameters / 4
    assert report.row("distilled_static_int8").size_bytes < report.row("distilled").size_bytes


def test_stored_variants_load_back_with_the_same_predictions(report, splits, tmp_path):
    x = splits["test"][0]
    for name, variant in report.variants.items():
        save(tmp_path / name, variant.stored())
        with torch.inference_mode():
            assert torch.equal(load(tmp_path / name)(x).argmax(1), variant.module(x).argmax(1)), name


def test_selection_and_onnx_of_the_chosen_variant(report):
    assert report.selection.chosen == min(report.rows[1:], key=lambda r: r.size_bytes).name
    assert report.onnx is not None and report.onnx_error is None
    # a quantized choice runs int8 kernels in onnxruntime too: near-tie logits may flip
    assert report.onnx.label_agreement >= 0.95 and report.onnx.size_bytes > 0


def test_onnx_parity_of_the_float_model(teacher, splits):
    parity = check_parity(export_onnx(teacher, splits["test"][0][:1]), teacher, splits["test"][0])
    assert parity.max_abs_diff < 1e-4 and parity.label_agreement == 1.0


def test_dynamic_int8_has_no_onnx_mapping(report, splits):
    with pytest.raises(CompressionError, match="ONNX export"):
        export_onnx(report.variants["dynamic_int8"].module, splits["test"][0][:1])


def test_table_markdown_and_plot(report, tmp_path):
    frame = table(report.rows)
    assert list(frame["name"]) == [r.name for r in report.rows]
    assert {"latency_ms_b1", "latency_ms_b64", "speedup_b64", "size_ratio"} <= set(frame.columns)
    assert markdown(frame).count("\n") == len(report.rows) + 1
    assert (
        plot_size_vs_accuracy(report.rows, tmp_path / "p.png", report.selection.chosen, 1.0).stat().st_size
        > 0
    )


def _row(name, accuracy, size, latency):
    return VariantRow(name, name, accuracy, accuracy, size, size, 10, 10, {1: latency, 256: latency})


CONSTRUCTED = [
    _row("float", 0.950, 1000, 10.0),
    _row("small_bad", 0.930, 100, 2.0),
    _row("mid_ok", 0.941, 300, 4.0),
    _row("edge_ok", 0.940, 400, 1.0),
    _row("big_ok", 0.960, 900, 9.0),
    _row("larger", 0.950, 1200, 12.0),
]


def test_budget_rule_picks_smallest_within_budget():
    selection = select_variant(CONSTRUCTED, budget_points=1.0, select_by="size")
    assert selection.chosen == "mid_ok"
    assert "missed the budget: accuracy drop 2.00 > 1.00" in selection.reasons["small_bad"]
    assert "within budget" in selection.reasons["edge_ok"]  # a drop of exactly the budget fits
    assert "not better than float" in selection.reasons["larger"]


def test_budget_rule_by_latency_and_when_nothing_fits():
    assert select_variant(CONSTRUCTED, budget_points=1.0, select_by="latency").chosen == "edge_ok"
    none = select_variant(CONSTRUCTED[:2], budget_points=0.5)
    assert none.chosen is None and "nothing selected" in none.summary()
    assert "missed the budget" in none.summary()


def test_budget_rule_selects_on_validation_accuracy_not_test():
    # small_bad keeps its test accuracy but loses 3 points on validation; mid_ok the other way round
    rows = [
        _row("float", 0.950, 1000, 10.0),
        _row("small_bad", 0.950, 100, 2.0),
        _row("mid_ok", 0.920, 300, 4.0),
    ]
    rows[0].val_accuracy, rows[1].val_accuracy, rows[2].val_accuracy = 0.96, 0.93, 0.955
    selection = select_variant(rows, budget_points=1.0, select_by="size")
    assert selection.chosen == "mid_ok"
    assert "missed the budget: validation accuracy drop 3.00 > 1.00" in selection.reasons["small_bad"]


def test_distillation_loss_with_alpha_zero_is_cross_entropy(teacher, splits):
    x, y = splits["val"][0][:32], splits["val"][1][:32]
    logits = torch.randn(32, 10)
    loss = distillation_loss(teacher, temperature=4.0, alpha=0.0)(logits, x, y)
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(logits, y))


def test_architecture_is_read_back_from_the_module(teacher):
    arch = architecture_of(teacher)
    assert arch == Architecture(spec_of(teacher)) and arch.family == "convnet"
    assert Architecture.from_dict(arch.to_dict()) == arch
    # a variant stored before architectures were specs: a grey ConvNet by image shape and config
    legacy = {
        "image_shape": [8, 8],
        "num_classes": 10,
        "model": ModelConfig(width=16, hidden=64).model_dump(),
    }
    assert Architecture.from_dict(legacy) == arch


def test_config_rejects_unmeasured_serving_batch_and_bad_sparsity():
    with pytest.raises(ConfigError, match="serving_batch_size"):
        Settings().override({"compress.serving_batch_size": 32})
    with pytest.raises(ConfigError, match="sparsity"):
        Settings().override({"compress.sparsities": [1.0]})


def test_load_names_the_file_when_it_is_not_a_compressed_model(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a model")
    with pytest.raises(CompressionError, match="bad.bin"):
        load(bad)
