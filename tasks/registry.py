"""Register stage and the registry lookups: the champion, model logging, versions, tags, aliases."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from pydantic import BaseModel

from modelmill.errors import RegistryConflict
from modelmill.gate import GateDecision
from tasks.aliases import (
    CHALLENGER,
    CHAMPION,
    NONE,
    PENDING,
    PROMOTION,
    PROMOTION_FROM,
    alias_target,
    alias_version,
    move_alias,
    promote,
    version_of_run,
)
from tasks.context import Lineage, RunContext
from tasks.modelstore import log_folder, register_version
from tasks.progress import stage
from tasks.split import SplitRef

__all__ = ["CHALLENGER", "CHAMPION", "Registration", "alias_version", "load_version", "register"]


class Registration(BaseModel):
    """The model version a run registered and where the champion alias points afterwards."""

    name: str
    version: str
    promoted: bool
    champion_version: str | None
    model_uri: str


def split_definition_of(settings: Any) -> str:
    from modelmill.split import split_definition

    cfg = settings.split
    return split_definition(cfg.salt, cfg.val_fraction, cfg.test_fraction)


def load_version(name: str, version: str) -> Any:
    """The module of a registered version, verified first (tasks.modelstore.load_verified)."""
    from mlflow import MlflowClient
    from tasks.modelstore import load_verified

    return load_verified(MlflowClient(), name, version).module


def _not_a_conflict(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O errors, not a moved champion (the flow re-evaluates against the new one)."""
    try:
        state.result()
    except RegistryConflict:
        return False
    except Exception:  # noqa: BLE001 - any other failure of the registry calls: retry
        return True
    return False


@stage("register", retries=2, retry_delay_seconds=3, retry_condition_fn=_not_a_conflict)
def register(
    ctx: RunContext, checkpoint: str, decision: GateDecision, lineage: Lineage, splits: SplitRef
) -> Registration:
    """Register the challenger once per MLflow run (a retry finds its version) and move the
    aliases per the gate: champion compare-and-set against the champion the gate compared with."""
    logger, tracker = get_run_logger(), ctx.tracker()
    name, client = ctx.settings.registry.model_name, tracker.client
    existing = version_of_run(client, name, ctx.run_id)
    if existing is not None:
        version, model_uri = str(existing.version), str(existing.source)
        logger.info("version %s of %s is already registered by this run: reused", version, name)
    else:
        version, model_uri = _create_version(ctx, checkpoint, decision, lineage, splits)
    actor = f"run {ctx.run_id}"
    data_version = getattr(lineage, "data_version", "") or ""
    move_alias(
        client, name, CHALLENGER, version, alias_target(client, name, CHALLENGER), "newest", actor,
        data_version=data_version,
    )  # fmt: skip
    if decision.promote:
        promote(client, name, version, decision.champion_version, decision.reason, actor,
                gate_figures(decision), data_version)  # fmt: skip
    champion = alias_target(client, name, CHAMPION)
    tracker.set_tags(
        {"registered_model": name, "model_version": version, "promoted": str(decision.promote).lower()}
    )
    logger.info(
        "registered %s version %s (%s); champion is version %s",
        name, version, "promoted" if decision.promote else "challenger only", champion,
    )  # fmt: skip
    return Registration(
        name=name, version=version, promoted=decision.promote, champion_version=champion, model_uri=model_uri
    )


def gate_figures(decision: GateDecision) -> dict[str, Any]:
    """What the gate compared, for the audit record."""
    return {
        "metric": decision.metric, "challenger": round(decision.challenger, 6),
        "champion": None if decision.champion is None else round(decision.champion, 6),
        "champion_version": decision.champion_version, "significant": decision.significant,
    }  # fmt: skip


def _create_version(
    ctx: RunContext, checkpoint: str, decision: GateDecision, lineage: Lineage, splits: SplitRef
) -> tuple[str, str]:
    """Log the model and register a version tagged with lineage, the gate and a pending promotion."""

    tracker = ctx.tracker()
    input_example = splits.xy("test")[0][:4].numpy()
    model_uri, manifest_tags = log_folder(tracker, checkpoint, input_example)  # safe format + manifest
    tags = lineage.tags(
        gate="promoted" if decision.promote else "rejected",
        mlflow_run_id=ctx.run_id,
        split_definition=split_definition_of(ctx.settings),
        **{f"test_{decision.metric}": f"{decision.challenger:.6f}"},
        **manifest_tags,
    )
    if decision.promote:  # until the champion alias points here (a kill in between: the next run finishes)
        tags.update({PROMOTION: PENDING, PROMOTION_FROM: decision.champion_version or NONE})
    version = str(register_version(model_uri, ctx.settings.registry.model_name, tags).version)
    return version, model_uri
