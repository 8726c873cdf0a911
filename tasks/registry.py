"""Registry tasks: the champion lookup, model logging, versions, tags and aliases."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from modelmill.gate import GateDecision
from tasks.context import RunContext
from tasks.modelstore import log_folder

CHAMPION, CHALLENGER = "champion", "challenger"


def alias_version(client, name: str, alias: str):
    """The model version behind `name@alias`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def load_version(name: str, version: str):
    """The module of a registered version, verified first (tasks.modelstore.load_verified)."""
    from mlflow import MlflowClient
    from tasks.modelstore import load_verified

    return load_verified(MlflowClient(), name, version).module


@task(name="register", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def register(
    ctx: RunContext, checkpoint: str, decision: GateDecision, lineage: dict[str, str], input_example
) -> dict:
    """Log the challenger, register a version with lineage tags, set its aliases per the gate."""
    import mlflow

    logger, tracker = get_run_logger(), ctx.tracker()
    name = ctx.settings.registry.model_name
    model_uri, manifest_tags = log_folder(tracker, checkpoint, input_example)
    tags = {
        **lineage,
        "gate": "promoted" if decision.promote else "rejected",
        f"test_{decision.metric}": f"{decision.challenger:.6f}",
        "mlflow_run_id": ctx.run_id,
        **manifest_tags,
    }
    version = str(mlflow.register_model(model_uri, name, tags=tags).version)
    client = tracker.client
    client.set_registered_model_alias(name, CHALLENGER, version)
    previous = alias_version(client, name, CHAMPION)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    champion = version if decision.promote else (str(previous.version) if previous else None)
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
        "model_uri": model_uri,
    }
