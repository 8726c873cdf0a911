"""Card task: the model card of the registered version (Markdown + JSON) on the run, as the
version's description (readable in the MLflow UI), linked by tags, and as a Prefect artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from modelmill.evaluation.card import (
    CARD_JSON,
    CARD_MD,
    CardFacts,
    card_markdown,
    version_description,
    write_card,
)
from tasks.context import Lineage, RunContext
from tasks.evaluate import Evaluation
from tasks.progress import stage
from tasks.registry import Registration
from tasks.split import SplitRef

CARD_DIR = "card"
TRAINING_KEYS = ("model.", "train.", "split.")


def card_facts(
    ctx: RunContext,
    evaluation: Evaluation,
    registered: Registration,
    lineage: Lineage,
    splits: SplitRef,
    compression: dict[str, Any] | None,
    gate_reason: str,
) -> CardFacts:
    schema = splits.schema()
    classes = list(schema.classes)
    labels = torch.cat([y for _, y in splits.all_xy().values()])
    counts = torch.bincount(labels, minlength=len(classes)).tolist()
    sections = evaluation.extras.get("sections", {})
    return CardFacts(
        model_name=registered.name,
        version=str(registered.version),
        task=f"{getattr(schema, 'kind', 'image')}-classification",
        dataset={
            "name": schema.name,
            "version": lineage.data_version,
            "n_test": splits.rows.get("test", 0),
            "class_balance": dict(zip(classes, counts, strict=True)),
        },
        intended_use=(
            f"Classify {schema.description or schema.name} into {len(classes)} classes "
            f"({', '.join(classes)}). Retrained nightly by modelmill; served as "
            f"`{registered.name}@champion`."
        ),
        training={k: v for k, v in ctx.settings.flat().items() if k.startswith(TRAINING_KEYS)},
        intervals=evaluation.extras.get("intervals", {}),
        per_class=evaluation.per_class,
        calibration=sections.get("calibration", {}),
        robustness=sections.get("robustness", {}),
        explanations=sections.get("explanations", {}),
        compression=_compression_section(compression),
        lineage={**lineage.model_dump(), "mlflow_run_id": ctx.run_id, "gate": gate_reason},
        artifacts=evaluation.extras.get("artifacts", {}),
    )


def _compression_section(compression: dict[str, Any] | None) -> dict[str, Any]:
    if not compression:
        return {}
    registered = compression.get("registered") or {}
    return {
        "selected": registered.get("variant", "none"),
        "registered_as": f"{registered['name']} version {registered['version']}" if registered else "-",
        "explanation_iou": compression.get("explanation_iou"),
        "selection": compression.get("selection", ""),
    }


@stage("card", retries=2, retry_delay_seconds=3)
def model_card(
    ctx: RunContext,
    evaluation: Evaluation,
    registered: Registration,
    lineage: Lineage,
    splits: SplitRef,
    compression: dict[str, Any] | None = None,
    gate_reason: str = "",
) -> dict[str, Any]:
    """Write the card, log it under `card/` on the run, set it as the version's description."""
    tracker, name, version = ctx.tracker(), registered.name, str(registered.version)
    facts = card_facts(ctx, evaluation, registered, lineage, splits, compression, gate_reason)
    folder = Path(ctx.work_dir, CARD_DIR)
    write_card(facts, folder)
    tracker.log_artifact(folder, CARD_DIR)
    markdown = card_markdown(facts)
    client = tracker.client
    full_card = f"runs:/{ctx.run_id}/{CARD_DIR}/{CARD_MD}"
    client.update_model_version(name, version, description=version_description(markdown, full_card))
    tags = {
        "model_card": f"runs:/{ctx.run_id}/{CARD_DIR}/{CARD_MD}",
        "model_card_json": f"runs:/{ctx.run_id}/{CARD_DIR}/{CARD_JSON}",
        "evaluation_failed_checks": ",".join(facts.failed_checks()) or "none",
    }
    temperature = facts.calibration.get("temperature")
    if temperature is not None:  # the served probabilities divide the logits by it
        tags["calibration_temperature"] = f"{temperature:.6f}"
        tags["calibration_file"] = f"runs:/{ctx.run_id}/evaluation/calibration.json"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    create_markdown_artifact(markdown=markdown, key="model-card", description=f"{name} version {version}")
    get_run_logger().info("model card of %s version %s: %s", name, version, tags["model_card"])
    return {"uri": tags["model_card"], "failed_checks": facts.failed_checks()}
