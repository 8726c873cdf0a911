"""Registry aliases, moved one way only: compare-and-set, idempotent per MLflow run, resumable.

Every alias move goes through `move_alias`, which appends it to the hash-chained audit history. The
check-then-set is safe because every modelmill writer of an alias holds the project lock
(tasks/writers.py); a move made outside modelmill (the MLflow UI) shows up as a conflict.
A promotion is two steps recorded on the version: tag `promotion=pending` (with the champion
it was compared against) when the version is created, `done` once the alias points at it; the
next run finishes a pending one whose expected champion is still in place.
"""

from __future__ import annotations

import time
from typing import Any

from modelmill.audit import replayed_aliases
from modelmill.errors import RegistryConflict
from tasks import audit

CHAMPION, CHALLENGER = "champion", "challenger"
PROMOTION, PROMOTION_FROM = "promotion", "promotion_from"
PENDING, DONE, ABANDONED = "pending", "done", "abandoned"
NONE = "none"  # promotion_from when there was no champion


def alias_version(client, name: str, alias: str):
    """The model version behind `name@alias`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def alias_target(client, name: str, alias: str) -> str | None:
    current = alias_version(client, name, alias)
    return str(current.version) if current is not None else None


def version_of_run(client, name: str, run_id: str):
    """The version of `name` registered by this MLflow run (tag mlflow_run_id), or None."""
    found = client.search_model_versions(f"name = '{name}' and tags.mlflow_run_id = '{run_id}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def move_alias(
    client: Any,
    name: str,
    alias: str,
    to_version: str,
    expected_from: str | None,
    reason: str,
    actor: str,
    gate: dict[str, Any] | None = None,
    data_version: str = "",
) -> str | None:
    """Point name@alias at to_version if it still points at expected_from (None: unset), and
    append the move to the model's audit history (tasks.audit).

    Idempotent (already there: nothing to do, but a move whose record a kill lost is recorded);
    raises RegistryConflict when the alias moved elsewhere meanwhile. Returns the version it
    pointed at before.
    """
    current = alias_target(client, name, alias)
    if current == str(to_version):
        _record_if_missing(client, name, alias, str(to_version), reason, actor, gate, data_version)
        return current
    if current != expected_from:
        raise RegistryConflict(
            f"{name}@{alias} is version {current}, not {expected_from} as compared by {actor}: "
            f"not moved to {to_version} ({reason})"
        )
    client.set_registered_model_alias(name, alias, str(to_version))
    client.set_model_version_tag(
        name, str(to_version), f"{alias}_since", f"{time.time():.0f} {actor}: {reason}"[:5000]
    )
    audit.append(
        client, name, actor=actor, alias=alias, from_version=current, to_version=str(to_version),
        reason=reason, gate=gate or {}, data_version=data_version,
    )  # fmt: skip
    return current


def _record_if_missing(
    client: Any,
    name: str,
    alias: str,
    version: str,
    reason: str,
    actor: str,
    gate: dict[str, Any] | None,
    data_version: str,
) -> None:
    """A kill between the alias move and its record: the history's last word on the alias is not
    this version, and the alias move was ours (its `<alias>_since` tag names this actor)."""
    replayed = replayed_aliases(audit.history(client, name)).get(alias)
    since = client.get_model_version(name, version).tags.get(f"{alias}_since", "")
    if replayed != version and f" {actor}: " in since:
        audit.append(
            client, name, actor=actor, alias=alias, from_version=replayed, to_version=version,
            reason=f"{reason} (recorded after an interrupted move)", gate=gate or {},
            data_version=data_version,
        )  # fmt: skip


def promote(
    client: Any,
    name: str,
    version: str,
    expected_from: str | None,
    reason: str,
    actor: str,
    gate: dict[str, Any] | None = None,
    data_version: str = "",
) -> None:
    """Move champion to version (compare-and-set, recorded) and mark its promotion done."""
    move_alias(client, name, CHAMPION, version, expected_from, reason, actor, gate, data_version)
    client.set_model_version_tag(name, version, PROMOTION, DONE)


def finish_pending_promotions(client, name: str, actor: str) -> list[str]:
    """Complete promotions a killed run left half-done; abandon those whose champion moved on."""
    from mlflow.exceptions import MlflowException

    try:
        pending = client.search_model_versions(f"name = '{name}' and tags.{PROMOTION} = '{PENDING}'")
    except MlflowException:
        return []
    finished = []
    for version in sorted(pending, key=lambda v: int(v.version)):
        expected = version.tags.get(PROMOTION_FROM, NONE)
        expected = None if expected == NONE else expected
        try:
            promote(client, name, str(version.version), expected, "finishing an interrupted promotion", actor)
            finished.append(str(version.version))
        except RegistryConflict as conflict:
            client.set_model_version_tag(name, str(version.version), PROMOTION, ABANDONED)
            client.set_model_version_tag(name, str(version.version), "promotion_note", str(conflict)[:5000])
    return finished
