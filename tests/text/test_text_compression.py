"""Compression of the text model (core): dynamic int8 of the linear layers, the student built from
the teacher's embeddings and first layers, both through the common compress() and stored form."""

import torch

from modelmill.compression import architecture_of, compress, load, methods, save
from modelmill.compression.text import student_of
from modelmill.config import Settings, TextModelConfig
from modelmill.encoder import MINILM, TextClassifier, load_pretrained

# a narrow encoder of the same family: the whole compress() path in seconds
SMALL = {**MINILM, "vocab_size": 64, "hidden": 32, "layers": 3, "heads": 2, "intermediate": 64,
         "max_positions": 16}  # fmt: skip


def test_int8_and_student_of_the_pretrained_encoder():
    torch.manual_seed(0)
    teacher = load_pretrained(TextClassifier(MINILM, 2)).eval()
    ids = torch.tensor([[101, 2204, 3185, 102, 0], [101, 11771, 3185, 2003, 102]] * 4)
    student = student_of(teacher, 2)
    assert len(student.encoder.layers) == 2 and student.spec["encoder"]["layers"] == 2
    teacher_state = teacher.state_dict()
    assert all(torch.equal(v, teacher_state[k]) for k, v in student.state_dict().items())
    int8 = methods.dynamic_int8(teacher, architecture_of(teacher))
    with torch.no_grad():
        assert torch.allclose(int8.module(ids), teacher(ids), atol=0.1)  # close, not equal


def test_text_model_compresses_through_the_common_core(tmp_path):
    torch.manual_seed(0)
    ids = torch.randint(5, 64, (240, 12))
    ids[:, 0], ids[:, -3:] = 1, 0  # a first token, right padding
    y = (ids[:, 1:9] < 20).any(1).long()
    splits = {"train": (ids[:160], y[:160]), "val": (ids[160:200], y[160:200]), "test": (ids[200:], y[200:])}
    settings = Settings().override(
        {"train.num_threads": 1, "train.device": "cpu", "train.batch_size": 32, "compress.distill_epochs": 2,
         "compress.latency_repeats": 3, "compress.latency_batch_sizes": [1, 64],
         "compress.serving_batch_size": 64, "compress.budget_points": 100.0, "compress.student_layers": 1}
    )  # fmt: skip
    text = TextModelConfig(encoder_learning_rate=1e-3, finetune_epochs=2)
    teacher = TextClassifier(SMALL, 2, dropout=0.0).eval()
    report = compress(teacher, splits, ["no", "yes"], settings.compress, settings.train, text=text)
    assert [r.name for r in report.rows] == ["float", "dynamic_int8", "distilled"]
    assert set(report.skipped) == {"static_int8", "prune"}
    student = report.variants["distilled"]
    assert student.arch.spec["encoder"]["layers"] == 1 and student.settings["student_layers"] == 1
    assert report.row("distilled").parameters < report.row("float").parameters
    assert report.row("dynamic_int8").size_bytes < report.row("float").size_bytes
    for name, variant in report.variants.items():
        save(tmp_path / name, variant.stored())
        with torch.inference_mode():
            assert torch.equal(load(tmp_path / name)(ids[200:]), variant.module(ids[200:])), name


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
