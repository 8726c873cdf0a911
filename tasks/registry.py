"""Registry tasks: the champion lookup, model logging, versions, tags and aliases."""

from __future__ import annotations

import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

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
from tasks.context import RunContext

__all__ = ["CHALLENGER", "CHAMPION", "alias_version", "load_version", "register"]


def load_version(name: str, version: str):
    import mlflow.pytorch

    return mlflow.pytorch.load_model(f"models:/{name}/{version}", map_location="cpu").eval()


def _not_a_conflict(task, task_run, state) -> bool:
    """Retry I/O errors, not a moved champion (the flow re-evaluates against the new one)."""
    try:
        state.result()
    except RegistryConflict:
        return False
    except Exception:  # noqa: BLE001 - any other failure of the registry calls: retry
        return True
    return False


@task(
    name="register",
    retries=2,
    retry_delay_seconds=3,
    retry_condition_fn=_not_a_conflict,
    cache_policy=NO_CACHE,
)
def register(
    ctx: RunContext, checkpoint: str, decision: GateDecision, lineage: dict[str, str], input_example
) -> dict:
    """Register the challenger once per MLflow run (a retry finds its version) and move the
    aliases per the gate: champion compare-and-set against the champion the gate compared with."""
    logger, tracker = get_run_logger(), ctx.tracker()
    name, client = ctx.settings.registry.model_name, tracker.client
    existing = version_of_run(client, name, ctx.run_id)
    if existing is not None:
        version = str(existing.version)
        logger.info("version %s of %s is already registered by this run: reused", version, name)
    else:
        version = _create_version(ctx, checkpoint, decision, lineage, input_example)
    actor = f"run {ctx.run_id}"
    move_alias(client, name, CHALLENGER, version, alias_target(client, name, CHALLENGER), "newest", actor)
    if decision.promote:
        promote(client, name, version, decision.champion_version, decision.reason, actor)
    champion = alias_target(client, name, CHAMPION)
    tracker.set_tags(
        {"registered_model": name, "model_version": version, "promoted": str(decision.promote).lower()}
    )
    logger.info(
        "registered %s version %s (%s); champion is version %s",
        name,
        version,
        "promoted" if decision.promote else "challenger only",
        champion,
    )
    return {
        "name": name,
        "version": version,
        "promoted": decision.promote,
        "champion_version": champion,
        "model_uri": f"models:/{name}/{version}",
    }


def _create_version(
    ctx: RunContext, checkpoint: str, decision: GateDecision, lineage: dict[str, str], input_example
) -> str:
    """Log the model and register a version tagged with lineage, the gate and a pending promotion."""
    import mlflow

    tracker = ctx.tracker()
    model = torch.load(checkpoint, weights_only=False)
    model_uri = tracker.log_pytorch_model(model, input_example)
    tags = {
        **lineage,
        "gate": "promoted" if decision.promote else "rejected",
        f"test_{decision.metric}": f"{decision.challenger:.6f}",
        "mlflow_run_id": ctx.run_id,
    }
    if decision.promote:  # until the champion alias points here (a kill in between: the next run finishes)
        tags.update({PROMOTION: PENDING, PROMOTION_FROM: decision.champion_version or NONE})
    return str(mlflow.register_model(model_uri, ctx.settings.registry.model_name, tags=tags).version)
