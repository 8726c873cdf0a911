"""Register stage and the registry lookups: the champion, model logging, versions, tags, aliases."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from pydantic import BaseModel

from modelmill.gate import GateDecision
from tasks.checkpoint import load_checkpoint
from tasks.context import Lineage, RunContext
from tasks.progress import stage
from tasks.split import SplitRef

CHAMPION, CHALLENGER = "champion", "challenger"


class Registration(BaseModel):
    """The model version a run registered and where the champion alias points afterwards."""

    name: str
    version: str
    promoted: bool
    champion_version: str | None
    model_uri: str


def alias_version(client: Any, name: str, alias: str) -> Any:
    """The model version behind `name@alias`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def load_version(name: str, version: str) -> Any:
    import mlflow.pytorch

    return mlflow.pytorch.load_model(f"models:/{name}/{version}", map_location="cpu").eval()


@stage("register", retries=2, retry_delay_seconds=3)
def register(
    ctx: RunContext, checkpoint: str, decision: GateDecision, lineage: Lineage, splits: SplitRef
) -> Registration:
    """Log the challenger, register a version with lineage tags, set its aliases per the gate."""
    import mlflow

    logger, tracker = get_run_logger(), ctx.tracker()
    name = ctx.settings.registry.model_name
    input_example = splits.xy("test")[0][:4].numpy()
    model_uri = tracker.log_pytorch_model(load_checkpoint(checkpoint), input_example)
    tags = lineage.tags(
        gate="promoted" if decision.promote else "rejected",
        mlflow_run_id=ctx.run_id,
        **{f"test_{decision.metric}": f"{decision.challenger:.6f}"},
    )
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
        name, version, "promoted" if decision.promote else "challenger only", champion,
    )  # fmt: skip
    return Registration(
        name=name, version=version, promoted=decision.promote, champion_version=champion, model_uri=model_uri
    )
