"""The audit history of a model's alias moves, kept in the tracking server as registered-model tags
(`audit.000001`, ... : canonical JSON, hash-chained), so it is the same on sqlite and on a shared
MLflow server. Appended by `tasks.aliases.move_alias` only."""

from __future__ import annotations

import time
from typing import Any

from modelmill.audit import AuditRecord, chain_problems, next_record, out_of_band_moves, parse_records
from modelmill.errors import AuditChainError

APPEND_TRIES = 5


def history(client: Any, name: str) -> list[AuditRecord]:
    return parse_records(dict(client.get_registered_model(name).tags), name)


def append(client: Any, name: str, **fields: Any) -> AuditRecord:
    """Append one record after the current head. MLflow has no compare-and-set on tags: write the
    next number, read it back, and when another appender took it, retry after the new head."""
    for _ in range(APPEND_TRIES):
        records = history(client, name)
        record = next_record(
            records[-1] if records else None, time=round(time.time(), 3), model=name, **fields
        )
        if record.tag in client.get_registered_model(name).tags:
            continue  # taken since we read: re-read the head
        client.set_registered_model_tag(name, record.tag, record.to_json())
        time.sleep(0.05)  # let a racing writer of the same number land before we read it back
        if client.get_registered_model(name).tags.get(record.tag) == record.to_json():
            return record
    raise AuditChainError(f"{name}: could not append an audit record after {APPEND_TRIES} tries (contention)")


def verify(client: Any, name: str) -> list[str]:
    """Problems found: a broken chain, and aliases that point elsewhere than the history says."""
    model = client.get_registered_model(name)
    records = parse_records(dict(model.tags), name)
    actual = {str(alias): str(version) for alias, version in (model.aliases or {}).items()}
    return chain_problems(records) + out_of_band_moves(records, actual)
