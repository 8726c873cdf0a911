"""Compression of the text model (core): dynamic int8 of the linear layers, the student built from
the teacher's embeddings and first layers, and the side-by-side measurement."""

import torch

from modelmill.compression.text import TextVariant, dynamic_int8, float_size, measure_variants, student_of
from modelmill.config import CompressConfig
from modelmill.encoder import MINILM, TextClassifier, load_pretrained


def test_int8_and_student_are_smaller_and_measured_against_the_float_teacher():
    torch.manual_seed(0)
    teacher = load_pretrained(TextClassifier(MINILM, 2)).eval()
    ids = torch.tensor([[101, 2204, 3185, 102, 0], [101, 11771, 3185, 2003, 102]] * 4)
    y = torch.tensor([1, 0] * 4)
    student = student_of(teacher, 2)
    assert len(student.encoder.layers) == 2 and student.spec["encoder"]["layers"] == 2
    teacher_state = teacher.state_dict()
    assert all(torch.equal(v, teacher_state[k]) for k, v in student.state_dict().items())
    int8 = dynamic_int8(teacher)
    with torch.no_grad():
        assert torch.allclose(int8.module(ids), teacher(ids), atol=0.1)  # close, not equal
    variants = [
        TextVariant("float", teacher, float_size(teacher), {}),
        int8,
        TextVariant("student", student.eval(), float_size(student), {}),
    ]
    cfg = CompressConfig(latency_batch_sizes=[1, 8], serving_batch_size=8, latency_repeats=2)
    rows = measure_variants(variants, (ids, y), ["neg", "pos"], cfg)
    assert [r["variant"] for r in rows] == ["float", "dynamic_int8", "student"]
    assert rows[0]["size_ratio"] == 1.0 and rows[1]["size_ratio"] > 1.4 and rows[2]["size_ratio"] > 1.4
    # the linear layers are a quarter of their float size; the embedding table stays float
    assert rows[1]["size_bytes"] < 0.7 * rows[0]["size_bytes"]
    assert {"latency_ms_b1", "latency_ms_b8", "speedup_b8", "f1_drop_points"} <= set(rows[2])


def test_a_tuning_trial_trains_the_text_model_in_its_mode(tmp_path, monkeypatch):
    """The Optuna objective on text splits: frozen mode, the kind's search space, embeddings cached."""
    import optuna
    from modelmill import tuning
    from modelmill.config import load_settings
    from modelmill.kinds.text import SEARCH_SPACE, TextSchema

    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        None, {"model.text.mode": "frozen", "tune.space": SEARCH_SPACE, "tune.epochs": 3}
    )
    good, bad = [101, 2204, 3185, 102], [101, 11771, 3185, 102]
    xy = (torch.tensor([good, bad] * 8), torch.tensor([1, 0] * 8))
    splits = {"schema": TextSchema("t", ("neg", "pos"), "body"), "preprocessor": None, "train": xy, "val": xy}
    study = optuna.create_study()
    study.optimize(tuning.Objective(settings, splits), n_trials=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert set(study.trials[0].params) == set(SEARCH_SPACE)
    assert len(list((tmp_path / tuning.EMBEDDINGS_DIR).glob("*.safetensors"))) == 1  # one per split input
