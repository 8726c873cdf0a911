"""Card task: the model card of the registered version (Markdown + JSON) on the run, as the
version's description (readable in the MLflow UI), linked by tags, and as a Prefect artifact."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from modelmill.data import LABEL
from modelmill.evaluation.card import CARD_JSON, CARD_MD, CardFacts, card_markdown, write_card
from tasks.context import RunContext
from tasks.splits import load_splits

CARD_DIR = "card"
TRAINING_KEYS = ("model.", "train.", "split.")


def card_facts(ctx: RunContext, evaluation: dict, registered: dict, lineage: dict, compression) -> CardFacts:
    dataset, labeled, xy = load_splits(ctx)
    classes = list(dataset.schema.classes)
    counts = labeled[LABEL].value_counts()
    balance = {c: int(counts.get(c, 0)) for c in classes}
    extras = evaluation.get("extras") or {}
    sections = extras.get("sections", {})
    return CardFacts(
        model_name=registered["name"],
        version=str(registered["version"]),
        task=f"{getattr(dataset.schema, 'kind', 'image')}-classification",
        dataset={
            "name": dataset.schema.name,
            "version": lineage.get("data_version", ""),
            "n_test": int(len(xy["test"][1])),
            "class_balance": balance,
        },
        intended_use=(
            f"Classify {dataset.schema.description or dataset.schema.name} into {len(classes)} classes "
            f"({', '.join(classes)}). Retrained nightly by modelmill; served as "
            f"`{registered['name']}@champion`."
        ),
        training={k: v for k, v in ctx.settings.flat().items() if k.startswith(TRAINING_KEYS)},
        intervals=extras.get("intervals", {}),
        per_class=evaluation.get("per_class", {}),
        calibration=sections.get("calibration", {}),
        robustness=sections.get("robustness", {}),
        explanations=sections.get("explanations", {}),
        compression=_compression_section(compression),
        lineage={**lineage, "mlflow_run_id": ctx.run_id, "gate": evaluation.get("gate_reason", "")},
        artifacts=extras.get("artifacts", {}),
    )


def _compression_section(compression) -> dict:
    if not compression:
        return {}
    return {k: v for k, v in compression.items() if isinstance(v, str | int | float | bool | list | dict)}


@task(name="card", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def model_card(ctx: RunContext, evaluation: dict, registered: dict, lineage: dict, compression=None) -> dict:
    """Write the card, log it under `card/` on the run, set it as the version's description."""
    tracker, name, version = ctx.tracker(), registered["name"], str(registered["version"])
    facts = card_facts(ctx, evaluation, registered, lineage, compression)
    folder = Path(ctx.work_dir, CARD_DIR)
    write_card(facts, folder)
    tracker.log_artifact(folder, CARD_DIR)
    markdown = card_markdown(facts)
    client = tracker.client
    client.update_model_version(name, version, description=markdown)
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
