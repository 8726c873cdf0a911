"""Manual promotion and rollback of the champion: compare-and-set alias moves through
`tasks.aliases` (so each is in the audit history); used by the CLI and the promote/rollback flows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from modelmill.audit import previous_champion
from modelmill.errors import RegistryConflict
from tasks import audit
from tasks.aliases import CHAMPION, alias_target, promote


class AliasMove(BaseModel):
    """What a promote or rollback did."""

    name: str
    alias: str
    from_version: str | None
    to_version: str
    reason: str


def promote_version(client: Any, name: str, version: str, reason: str, actor: str) -> AliasMove:
    """Point name@champion at `version` (compare-and-set against the champion read just before)."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        raise RegistryConflict(f"{name} has no version {version}") from None
    current = alias_target(client, name, CHAMPION)
    promote(client, name, str(version), current, reason, actor, data_version=mv.tags.get("data_version", ""))
    return AliasMove(name=name, alias=CHAMPION, from_version=current, to_version=str(version), reason=reason)


def rollback(client: Any, name: str, to: str | None, reason: str, actor: str) -> AliasMove:
    """Back to `to`, or to the version the champion pointed at before it moved to the current one."""
    current = alias_target(client, name, CHAMPION)
    target = to or previous_champion(audit.history(client, name), CHAMPION, current)
    if target is None:
        raise RegistryConflict(
            f"{name}@champion (version {current}): no earlier champion in the audit history; use --to VERSION"
        )
    if target == current:
        raise RegistryConflict(f"{name}@champion is already version {target}")
    return promote_version(client, name, target, reason, actor)
