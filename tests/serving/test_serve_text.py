"""A text champion (the packaged encoder, frozen, tiny) served: /predict takes plain strings and
answers each with its label and class probabilities; a non-string input is a 400 naming it."""

import pytest

from tests.serving.conftest import start_server, stop_server
from tests.text.test_text_cli import modelmill, reviews, tiny_text_settings, write_csv


@pytest.mark.slow
def test_a_text_champion_answers_predict_with_strings(project, tmp_path):
    csv = write_csv(tmp_path / "reviews.csv", reviews(200))
    imported = modelmill("data", "import", str(csv), "--text", "review", "--target", "sentiment",
                         "--id", "id", cwd=project)  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    tiny_text_settings(project, "frozen")
    trained = modelmill("run", cwd=project)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    server = start_server(project)
    try:
        held_out = reviews(6, seed=7)
        answer = server.post("/predict", {"inputs": [text for _, text, _ in held_out]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert answer.headers["X-Model-Version"] == body["version"] == "1"
        assert all(set(p["probabilities"]) == {"neg", "pos"} for p in body["predictions"])
        labels = [p["label"] for p in body["predictions"]]
        assert sum(got == want for got, (_, _, want) in zip(labels, held_out, strict=True)) >= 5, labels
        bad = server.post("/predict", {"inputs": ["fine", 3]})
        assert bad.status_code == 400 and "input 1: expected a text" in bad.json()["message"], bad.text
    finally:
        stop_server(server)
