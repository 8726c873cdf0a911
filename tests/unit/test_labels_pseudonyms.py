"""Annotators stored as keyed pseudonyms: no email in the ledger or the report, one identity kept."""

import json
import stat

import pytest

from modelmill.config import LabelsConfig
from modelmill.errors import ConfigError
from modelmill.labels import import_exports, load_ledger
from modelmill.labels.pseudonyms import KEY_ENV, load_key, pseudonymizer
from tests.support import labelstudio_sim as sim

CFG = LabelsConfig(strategy="dawid_skene")


@pytest.fixture
def data(tmp_path):
    schema, ids = sim.tiny_dataset(tmp_path / "data")
    return tmp_path / "data", schema, ids


@pytest.fixture
def key(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    return load_key(tmp_path / ".modelmill" / "annotator.key")


def test_the_key_is_made_once_private_and_reused(tmp_path, key):
    path = tmp_path / ".modelmill" / "annotator.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 32
    assert load_key(path) == key


def test_a_bad_key_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "not-hex")
    with pytest.raises(ConfigError, match=KEY_ENV):
        load_key(tmp_path / "k")


def test_pseudonyms_are_stable_keyed_and_case_blind(key):
    name = pseudonymizer(key)
    assert name("Alice@Example.com ") == name("alice@example.com") != name("bob@example.com")
    assert name("alice@example.com") != pseudonymizer(b"k" * 32)("alice@example.com")
    assert name(name("alice@example.com")) == name("alice@example.com")  # idempotent


def test_no_email_is_stored_or_reported_and_dawid_skene_sees_three_annotators(data, tmp_path, key):
    data_dir, schema, ids = data
    tasks = sim.simulate(ids[10:30], ["dog"] * 20, schema.classes, {1: 0.95, 2: 0.9, 3: 0.5}, seed=1)
    rows = sim.to_json_min(tasks)
    for row in rows[::2]:  # the same people, written differently
        row["annotator"] = row["annotator"].upper()
    name = pseudonymizer(key)
    report = import_exports(data_dir, [sim.write_json(tmp_path / "e.json", rows)], CFG, pseudonym=name)
    expected = {name(f"a{i}@example.com") for i in (1, 2, 3)}
    assert set(report.resolution.annotator_reliability) == expected
    ledger = load_ledger(data_dir)
    assert set(ledger["annotator"]) == expected
    archived = b"".join(p.read_bytes() for p in (data_dir / "exports").iterdir())
    assert name("a1@example.com").encode() in archived  # the archived export is scrubbed too
    stored = archived + (data_dir / "annotations.parquet").read_bytes() + json.dumps(report.rows()).encode()
    assert b"@example.com" not in stored and b"EXAMPLE.COM" not in stored


def test_scrubbing_survives_chunk_boundaries(key):
    import io

    from modelmill.labels.pseudonyms import scrubbed

    name = pseudonymizer(key)
    text = b'[{"annotator": "someone.long@example.com", "x": 1},' * 500
    out = b"".join(scrubbed(io.BytesIO(text), name, chunk=7))
    assert b"@" not in out and out.count(name("someone.long@example.com").encode()) == 500
