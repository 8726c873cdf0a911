"""The hash-chained audit history of alias moves: canonical JSON records, each carrying the hash of
the one before it; verifying the chain and replaying it against the registry's aliases."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from modelmill.errors import AuditChainError

TAG_PREFIX = "audit."
MAX_RECORD_CHARS = 4000  # a registered-model tag value is a VARCHAR(5000) on SQL stores
GENESIS = "0" * 64
REASON_CUT = 200  # characters of a reason kept when a record would not fit


@dataclass(frozen=True)
class AuditRecord:
    """One alias move: who moved name@alias from which version to which, why, on what evidence."""

    seq: int
    time: float
    actor: str
    model: str
    alias: str
    from_version: str | None
    to_version: str
    reason: str
    gate: dict[str, Any] = field(default_factory=dict)
    data_version: str = ""
    prev_hash: str = GENESIS
    hash: str = ""

    @property
    def tag(self) -> str:
        return tag_of(self.seq)

    def body(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "hash"}

    def to_json(self) -> str:
        return canonical({**self.body(), "hash": self.hash})


def tag_of(seq: int) -> str:
    return f"{TAG_PREFIX}{seq:06d}"


def canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(record: AuditRecord) -> str:
    return hashlib.sha256(canonical(record.body()).encode()).hexdigest()


def next_record(previous: AuditRecord | None, **fields: Any) -> AuditRecord:
    """The record after `previous` (None: the first), hashed; the reason and gate figures are cut
    so the canonical JSON fits one registry tag."""
    seq = previous.seq + 1 if previous else 1
    record = AuditRecord(seq=seq, prev_hash=previous.hash if previous else GENESIS, **fields)
    while len(record.to_json()) > MAX_RECORD_CHARS:
        if len(record.reason) > REASON_CUT + 3:
            record = replace(record, reason=record.reason[:REASON_CUT] + "...")
        elif record.gate:
            record = replace(record, gate={})
        else:
            raise AuditChainError(f"audit record {seq} of {record.model}: too large for a registry tag")
    return replace(record, hash=digest(record))


def parse_records(tags: dict[str, str], model: str) -> list[AuditRecord]:
    """The audit records among a registered model's tags, in order; AuditChainError names a tag
    that is not a record."""
    records = []
    for key in sorted(k for k in tags if k.startswith(TAG_PREFIX)):
        try:
            raw = json.loads(tags[key])
            record = AuditRecord(**raw)
        except (ValueError, TypeError) as exc:
            raise AuditChainError(f"{model}: tag {key}: not an audit record ({exc})") from None
        if record.tag != key:
            raise AuditChainError(f"{model}: tag {key}: holds record {record.seq}")
        records.append(record)
    return records


def chain_problems(records: list[AuditRecord]) -> list[str]:
    """Every break of the chain: a gap in the numbering, a record whose hash is not its content's,
    a record that does not point at the hash of the one before it."""
    problems, previous = [], GENESIS
    for expected, record in enumerate(records, start=1):
        where = f"record {record.seq} ({record.tag})"
        if record.seq != expected:
            problems.append(f"{where}: expected record {expected} (a record is missing)")
        if digest(record) != record.hash:
            problems.append(f"{where}: its content does not match its hash (edited after it was written)")
        if record.prev_hash != previous:
            problems.append(f"{where}: does not follow the hash of the record before it")
        previous = record.hash
    return problems


def replayed_aliases(records: list[AuditRecord]) -> dict[str, str]:
    """alias -> the version the history says it points at now."""
    aliases: dict[str, str] = {}
    for record in records:
        aliases[record.alias] = record.to_version
    return aliases


def out_of_band_moves(records: list[AuditRecord], actual: dict[str, str]) -> list[str]:
    """Aliases whose registry target is not what the history says: moved outside modelmill."""
    replayed, problems = replayed_aliases(records), []
    for alias in sorted(set(replayed) | set(actual)):
        want, have = replayed.get(alias), actual.get(alias)
        if want != have:
            problems.append(
                f"alias {alias}: the registry says version {have}, the audit history says {want} "
                "(moved outside modelmill)"
            )
    return problems


def previous_champion(records: list[AuditRecord], alias: str, current: str | None) -> str | None:
    """The version `alias` pointed at before it moved to `current` (the rollback target)."""
    for record in reversed(records):
        if record.alias == alias and record.to_version == current:
            return record.from_version
    return None
