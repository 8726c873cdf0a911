import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from modelmill.config import GateConfig
from modelmill.evaluation import evaluate_predictions, plot_confusion_matrix
from modelmill.gate import decide

Y_TRUE = [0, 0, 1, 1, 2, 2, 2, 0, 1, 2]
Y_PRED = [0, 1, 1, 1, 2, 0, 2, 0, 0, 1]  # class 3 never appears in either


def test_metrics_match_scikit_learn_on_fixed_inputs():
    report = evaluate_predictions(Y_TRUE, Y_PRED, ["a", "b", "c", "d"])
    labels = [0, 1, 2, 3]
    assert report.accuracy == pytest.approx(0.6)
    assert report.macro_f1 == pytest.approx(
        f1_score(Y_TRUE, Y_PRED, labels=labels, average="macro", zero_division=0)
    )
    assert report.macro_precision == pytest.approx(
        precision_score(Y_TRUE, Y_PRED, labels=labels, average="macro", zero_division=0)
    )
    assert report.macro_recall == pytest.approx(
        recall_score(Y_TRUE, Y_PRED, labels=labels, average="macro", zero_division=0)
    )
    assert report.per_class["c"]["recall"] == pytest.approx(0.5) and report.per_class["c"]["support"] == 4
    assert report.per_class["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert np.asarray(report.confusion).sum() == 10 and report.confusion[2][0] == 1
    metrics = report.metrics()
    assert metrics["test_f1_class_a"] == pytest.approx(report.per_class["a"]["f1"])


def test_confusion_matrix_png(tmp_path):
    report = evaluate_predictions(Y_TRUE, Y_PRED, ["a", "b", "c", "d"])
    path = plot_confusion_matrix(report, tmp_path / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [(0.90, None, True), (0.95, 0.95, True), (0.946, 0.95, True), (0.944, 0.95, False), (0.99, 0.95, True)],
)
def test_gate(challenger, champion, promote):
    decision = decide(challenger, champion, GateConfig(tolerance=0.005))
    assert decision.promote is promote
    assert ("champion kept" in decision.reason) is (not promote)
