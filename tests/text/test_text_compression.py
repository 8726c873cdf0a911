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
