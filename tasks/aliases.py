"""Registry aliases, moved one way only: compare-and-set, idempotent per MLflow run, resumable.

Every alias move goes through `move_alias` (it holds the place for the audit record). The
check-then-set is safe because every modelmill writer of an alias holds the project lock
(tasks/writers.py); a move made outside modelmill (the MLflow UI) shows up as a conflict.
A promotion is two steps recorded on the version: tag `promotion=pending` (with the champion
it was compared against) when the version is created, `done` once the alias points at it; the
next run finishes a pending one whose expected champion is still in place.
"""

from __future__ import annotations

import time

from modelmill.errors import RegistryConflict

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
    client, name: str, alias: str, to_version: str, expected_from: str | None, reason: str, actor: str
) -> str | None:
    """Point name@alias at to_version if it still points at expected_from (None: unset).

    Idempotent (already there: nothing to do); raises RegistryConflict when the alias moved
    elsewhere meanwhile. Returns the version it pointed at before.
    """
    current = alias_target(client, name, alias)
    if current == str(to_version):
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
    return current


def promote(client, name: str, version: str, expected_from: str | None, reason: str, actor: str) -> None:
    """Move champion to version (compare-and-set) and mark its promotion done."""
    move_alias(client, name, CHAMPION, version, expected_from, reason, actor)
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
