"""The audit chain as pure functions: hashing, breaks found, out-of-band alias moves, size bound."""

from dataclasses import replace

import pytest

from modelmill.audit import (
    MAX_RECORD_CHARS,
    chain_problems,
    next_record,
    out_of_band_moves,
    parse_records,
    previous_champion,
)
from modelmill.errors import AuditChainError


def chain(*moves: tuple[str | None, str]) -> list:
    records, previous = [], None
    for i, (old, new) in enumerate(moves):
        previous = next_record(previous, time=float(i), actor="t", model="m", alias="champion",
                               from_version=old, to_version=new, reason=f"move {i}")  # fmt: skip
        records.append(previous)
    return records


def test_a_chain_links_each_record_to_the_hash_of_the_one_before():
    records = chain((None, "1"), ("1", "2"), ("2", "1"))
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[1].prev_hash == records[0].hash and records[2].prev_hash == records[1].hash
    assert chain_problems(records) == []
    tags = {r.tag: r.to_json() for r in records} | {"other": "x"}
    assert parse_records(tags, "m") == records


def test_an_edit_a_removal_and_a_relinked_record_are_each_found():
    records = chain((None, "1"), ("1", "2"), ("2", "3"))
    edited = [records[0], replace(records[1], reason="nothing to see"), records[2]]
    assert chain_problems(edited) == ["record 2 (audit.000002): its content does not match its hash "
                                      "(edited after it was written)"]  # fmt: skip
    assert "expected record 2 (a record is missing)" in chain_problems([records[0], records[2]])[0]
    forged = next_record(records[0], time=9.0, actor="x", model="m", alias="champion",
                         from_version="1", to_version="9", reason="forged")  # fmt: skip
    relinked = [records[0], records[1], replace(forged, seq=3)]
    assert any(
        "does not follow the hash" in p or "does not match its hash" in p for p in chain_problems(relinked)
    )


def test_aliases_moved_outside_the_history_are_reported():
    records = chain((None, "1"), ("1", "2"))
    assert out_of_band_moves(records, {"champion": "2"}) == []
    assert out_of_band_moves(records, {"champion": "3"}) == [
        "alias champion: the registry says version 3, the audit history says 2 (moved outside modelmill)"
    ]
    assert (
        "alias prod: the registry says version 1, the audit history says None"
        in out_of_band_moves(records, {"champion": "2", "prod": "1"})[0]
    )


def test_the_rollback_target_is_the_champion_before_the_current_one():
    records = chain((None, "1"), ("1", "2"), ("2", "3"))
    assert previous_champion(records, "champion", "3") == "2"
    assert previous_champion(records, "champion", "1") is None


def test_a_record_always_fits_one_registry_tag():
    record = next_record(None, time=0.0, actor="t", model="m", alias="champion", from_version=None,
                         to_version="1", reason="r" * 20_000, gate={"k" * 5000: 1})  # fmt: skip
    assert len(record.to_json()) <= MAX_RECORD_CHARS and record.reason.endswith("...")
    assert chain_problems([record]) == []
    with pytest.raises(AuditChainError, match="not an audit record"):
        parse_records({"audit.000001": "{}"}, "m")
