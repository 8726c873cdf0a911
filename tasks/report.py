"""Report task: the run summary for humans, as a Prefect markdown artifact."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from modelmill.secrets import without_userinfo
from tasks.context import RunContext
from tasks.tracking import tracking_uri


def ui_link(ctx: RunContext, path: str) -> str:
    uri = without_userinfo(tracking_uri(ctx.settings, ctx.project_dir))
    base = uri.rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000"
    return f"{base}/{path}"


@task(name="summary", cache_policy=NO_CACHE)
def publish_summary(ctx: RunContext, summary: dict) -> str:
    """Markdown summary of the run (data version, metrics, version, gate) as a Prefect artifact."""
    ev, reg = summary["evaluation"], summary["registry"]
    champ = ev["champion"]
    rows = [
        ("accuracy", "accuracy"),
        ("macro F1", "macro_f1"),
        ("macro precision", "macro_precision"),
        ("macro recall", "macro_recall"),
    ]
    table = "\n".join(
        f"| {label} | {ev['challenger'][key]:.4f} | {champ[key]:.4f} |"
        if champ
        else f"| {label} | {ev['challenger'][key]:.4f} | - |"
        for label, key in rows
    )
    run_url = ui_link(ctx, f"#/experiments/{summary['experiment_id']}/runs/{ctx.run_id}")
    model_url = ui_link(ctx, f"#/models/{reg['name']}/versions/{reg['version']}")
    outcome = (
        "now `champion`"
        if reg["promoted"]
        else "alias `challenger`; champion stays version " + str(reg["champion_version"])
    )
    markdown = f"""# retrain: {"promoted" if reg["promoted"] else "not promoted"}

- data version: `{summary["data_version"]}`
- model: **{reg["name"]} version {reg["version"]}**, {outcome}
- gate: {summary["gate_reason"]}
- MLflow run: `{ctx.run_id}` ([open]({run_url})), model version: [open]({model_url})

| test metric | challenger | champion (v{ev["champion_version"] or "-"}) |
| --- | --- | --- |
{table}

Open the MLflow UI on this store: `make ui` (or `modelmill ui`), then {run_url}
"""
    create_markdown_artifact(
        markdown=markdown, key="retrain-summary", description="modelmill retrain summary"
    )
    ctx.tracker().log_text(markdown, "summary.md")
    return markdown
