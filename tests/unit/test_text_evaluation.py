"""The text kind's explanations and robustness on the real packaged encoder with a trained head:
token attributions pass their sanity checks and fail them for a model that is not the trained one;
the perturbations are seeded, identity at rate 0, and a perturbation that ignores its rate is caught."""

import copy
import random

import pandas as pd
import pytest
import torch

from modelmill.config import ExplanationsConfig, RobustnessConfig
from modelmill.encoder import MINILM, TextClassifier, load_pretrained
from modelmill.evaluation import text as text_eval
from modelmill.kinds.text import fit_preprocessor, text_schema

GOOD = ["great", "wonderful", "superb", "delightful", "brilliant"]
BAD = ["awful", "boring", "dull", "tedious", "clumsy"]
FILLER = ["the", "film", "story", "cast", "plot", "scenes", "director", "movie", "ending", "music"]


def reviews(n: int, seed: int) -> tuple[list[str], torch.Tensor]:
    rng, texts, labels = random.Random(seed), [], []
    for i in range(n):
        words = rng.sample(FILLER, 6) + rng.sample(GOOD if i % 2 else BAD, 2)
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(i % 2)
    return texts, torch.tensor(labels)


@pytest.fixture(scope="module")
def trained():
    """The packaged encoder (frozen) with a linear head fitted on its embeddings: accuracy 1.0."""
    texts, y = reviews(200, seed=0)
    schema = text_schema("t", ("neg", "pos"), pd.Series(texts), "body")
    pre = fit_preprocessor(pd.DataFrame({"body": texts}), schema)
    torch.manual_seed(0)
    model = load_pretrained(TextClassifier(MINILM, 2)).eval()
    with torch.no_grad():
        emb = model.encoder(pre.transform_texts(texts))
    head = model.head[-1]
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(emb), y).backward()
        opt.step()
    test_texts, test_y = reviews(80, seed=1)
    inputs = text_eval.text_inputs(pre, test_texts)
    return model, inputs, inputs.encode(test_texts), test_y


def test_token_attributions_pass_completeness_deletion_and_randomisation(trained):
    model, inputs, ids, y = trained
    report = text_eval.explain_text(model, ids, y, ExplanationsConfig(), inputs)
    failed = [c.detail for c in report.checks if not c.passed]
    assert not failed, failed
    assert report.deletion_ratio < 0.7 and report.randomisation_spearman < 0.3
    # the most attributed word of each probe is one of its two sentiment words
    for row, item in enumerate(report.probe_index):
        words = [(inputs.token(int(t)), float(a)) for t, a in zip(ids[item], report.ig[row], strict=True)]
        top = max((w for w in words if w[0] not in ("[CLS]", "[SEP]", "[PAD]")), key=lambda w: w[1])[0]
        assert top in GOOD + BAD, (top, words)


def test_randomisation_check_fails_when_the_compared_model_is_the_trained_one(trained):
    model, inputs, ids, y = trained
    same = copy.deepcopy(model)
    cfg = ExplanationsConfig(text_ig_steps=8)
    report = text_eval.explain_text(model, ids, y, cfg, inputs, randomised=same)
    check = next(c for c in report.checks if c.name == "model_randomisation")
    assert not check.passed and check.value > 0.99


def test_token_attributions_render_as_escaped_highlighted_html(trained, tmp_path):
    model, inputs, ids, y = trained
    cfg = ExplanationsConfig(probes_per_class=1, text_ig_steps=8)
    report = text_eval.explain_text(model, ids, y, cfg, inputs)
    page = text_eval.render_token_attributions(report, ids, y, ["<neg>", "pos"], inputs, tmp_path / "t.html")
    body = page.read_text()
    assert body.count("<p><b>") == 2 and "&lt;neg&gt;" in body and "<neg>" not in body
    assert "rgba(220,40,40,1.00)" in body  # each probe's strongest word fully highlighted


def test_perturbations_are_seeded_and_identity_at_rate_zero():
    texts = ["the film was great fun", "a dull and tedious plot"]
    for perturb in text_eval.TEXT_PERTURBATIONS.values():
        assert perturb(texts, 0.0, 1) == texts
        assert perturb(texts, 0.3, 1) == perturb(texts, 0.3, 1) != texts
    assert text_eval.char_noise(texts, 0.3, 1) != text_eval.char_noise(texts, 0.3, 2)


def test_robustness_falls_with_the_rate_and_a_perturbation_ignoring_it_is_caught(trained, monkeypatch):
    model, inputs, ids, y = trained
    cfg = RobustnessConfig(text_rates=[0.0, 0.2, 0.5])
    report = text_eval.text_robustness(model, y, cfg, inputs)
    assert report.clean == 1.0 and all(by[0.0] == report.clean for by in report.attacks.values())
    assert report.passed, [c.detail for c in report.checks if not c.passed]
    assert report.strongest() == min(by[0.5] for by in report.attacks.values()) < report.clean
    assert set(report.noise) == {0.1, 0.2}
    # a broken perturbation (its rate ignored: the same strong noise at every rate) fails its checks
    broken = {"char_noise": lambda texts, rate, seed: text_eval.char_noise(texts, 0.5, seed)}
    monkeypatch.setattr(text_eval, "TEXT_PERTURBATIONS", broken)
    flat = text_eval.text_robustness(model, y, cfg, inputs)
    failed = [c.name for c in flat.checks if not c.passed]
    assert failed == ["char_noise_rate0_equals_clean", "char_noise_falls_with_rate"]


PRODUCT = ["the", "phone", "battery", "screen", "price", "delivery", "charger", "case", "seller", "box"]


def test_text_drift_is_measured_on_the_sentence_encoders_embeddings(trained):
    """Another topic with the same sentiment words and labels is embedding drift; a resplit is not."""
    from modelmill.config import DriftConfig
    from modelmill.drift import DriftSample, compare

    model, inputs, _, _ = trained
    cfg = DriftConfig(permutations=200)

    def sample(name, texts, y):
        return DriftSample(name, inputs.encode(texts), [str(int(v)) for v in y])

    reference = sample("ref", *reviews(150, seed=2))
    same = compare(model, reference, sample("resplit", *reviews(150, seed=3)), ["0", "1"], cfg)
    assert not same.drifted, same.tests
    texts, y = reviews(150, seed=4)
    moved = [" ".join(PRODUCT[FILLER.index(w)] if w in FILLER else w for w in t.split()) for t in texts]
    other = compare(model, reference, sample("products", moved, y), ["0", "1"], cfg)
    assert "embeddings" in other.drifted_tests() and "labels" not in other.drifted_tests(), other.tests


def test_compression_keeps_the_reasons_is_one_for_the_same_model_and_lower_for_another(trained):
    model, inputs, ids, y = trained
    cfg = ExplanationsConfig(top_fraction=0.25)
    assert text_eval.text_explanation_iou(model, copy.deepcopy(model), ids, y, cfg, inputs) == 1.0
    other = text_eval.reinitialised(model, seed=3)
    assert text_eval.text_explanation_iou(model, other, ids, y, cfg, inputs) < 0.6
