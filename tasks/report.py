"""Summary stage: the run's outcome for humans (Prefect markdown artifact, summary.md in MLflow)
and for the next run (summary.json, read back when a later run reuses this one)."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact

from modelmill.secrets import without_userinfo
from tasks.context import RunContext
from tasks.progress import stage
from tasks.tracking import tracking_uri

SUMMARY_FILE = "summary.json"
METRICS = (
    ("accuracy", "accuracy"),
    ("macro F1", "macro_f1"),
    ("macro precision", "macro_precision"),
    ("macro recall", "macro_recall"),
)


def ui_link(ctx: RunContext, path: str) -> str:
    uri = without_userinfo(tracking_uri(ctx.settings, ctx.project_dir))
    base = uri.rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000"
    return f"{base}/{path}"


@stage("summary")
def publish_summary(ctx: RunContext, summary: dict[str, Any]) -> dict[str, Any]:
    """Markdown summary of the run (data version, metrics, version, gate, compression) as a Prefect
    artifact and in MLflow; the summary JSON on the run; the run tagged as retrained."""
    from tasks.reuse import RETRAINED_TAG

    tracker = ctx.tracker()
    summary = {**summary, "experiment_id": tracker.client.get_run(ctx.run_id).info.experiment_id}
    summary["markdown"] = render(ctx, summary)
    create_markdown_artifact(
        markdown=summary["markdown"], key="retrain-summary", description="modelmill retrain summary"
    )
    tracker.log_text(summary["markdown"], "summary.md")
    tracker.log_dict(summary, SUMMARY_FILE)
    tracker.set_tags({RETRAINED_TAG: "true"})
    return summary


def render(ctx: RunContext, summary: dict[str, Any]) -> str:
    ev, reg = summary["evaluation"], summary["registry"]
    champ = ev["champion"]
    intervals = (ev.get("extras") or {}).get("intervals", {})
    table = "\n".join(
        f"| {label} | {ev['challenger'][key]:.4f}{_interval(intervals.get(key))} | "
        + (f"{champ[key]:.4f} |" if champ else "- |")
        + _difference((ev.get("paired") or {}).get(key))
        for label, key in METRICS
    )
    run_url = ui_link(ctx, f"#/experiments/{summary['experiment_id']}/runs/{ctx.run_id}")
    model_url = ui_link(ctx, f"#/models/{reg['name']}/versions/{reg['version']}")
    champion_line = (
        "now `champion`"
        if reg["promoted"]
        else f"alias `challenger`; champion stays version {reg['champion_version']}"
    )
    return f"""# retrain: {"promoted" if reg["promoted"] else "not promoted"}

- data version: `{summary["data_version"]}`
- model: **{reg["name"]} version {reg["version"]}**, {champion_line}
- gate: {summary["gate_reason"]}
- compression: {summary.get("compression_note") or "-"}
- evaluation sanity checks: {_checks_line(ev)}
- model card: `{(summary.get("card") or {}).get("uri", "-")}`
- drift against the champion's data: {drift_note(summary.get("drift"))}
- MLflow run: `{ctx.run_id}` ([open]({run_url})), model version: [open]({model_url})

| test metric | challenger (95% interval) | champion (v{ev["champion_version"] or "-"}) | paired difference |
| --- | --- | --- | --- |
{table}

Open the MLflow UI on this store: `make ui` (or `modelmill ui`), then {run_url}
"""


def _interval(interval: dict[str, float] | None) -> str:
    return f" [{interval['low']:.4f}, {interval['high']:.4f}]" if interval else ""


def _difference(paired: dict[str, Any] | None) -> str:
    """challenger - champion with its paired interval, and whether it is significant."""
    if not paired:
        return " - |"
    d = paired["difference"]
    verdict = "significant" if paired["significant"] else "not significant"
    return f" {d['point']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}], {verdict} |"


def _checks_line(ev: dict[str, Any]) -> str:
    extras = ev.get("extras") or {}
    if "failed_checks" not in extras:
        return "-"
    failed = extras["failed_checks"]
    return "all passed" if not failed else "FAILED: " + ", ".join(f"`{name}`" for name in failed)


def drift_note(drift: dict[str, Any] | None) -> str:
    if drift is None:
        return "not checked (off, no champion yet, or its own data version)"
    report = drift["report"]
    names = [t["name"] for t in report["tests"] if t["drifted"]]
    return ("**detected** (" + ", ".join(names) + ")" if names else "none") + f" (`{report['reference']}`)"
