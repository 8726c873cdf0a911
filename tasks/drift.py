"""Drift stage: a data version (a DVC md5, a git revision of data.dvc, `champion`, `workspace`)
or a file / folder of inputs against another, through the champion; the report on the MLflow run,
a Prefect markdown artifact and, on drift, the Prefect event `modelmill.drift.detected`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from mlflow import MlflowClient
from modelmill.config import Settings
from modelmill.data import ITEMS_FILE, LABELS_FILE, SCHEMA_FILE
from modelmill.drift import DriftReport, compare
from modelmill.drift_inputs import sample_of_dataset, sample_of_inputs
from modelmill.drift_report import to_markdown, verdict, write_report
from modelmill.errors import DatasetError, DriftDetected, DriftError
from modelmill.kinds import preprocessor_from_state
from modelmill.kinds.base import Preprocessor
from tasks.context import RunContext
from tasks.data import data_version
from tasks.modelstore import load_verified
from tasks.progress import stage
from tasks.registry import CHAMPION, alias_version

EVENT = "modelmill.drift.detected"
REPORT_DIR = "drift-report"
FEATURES_PAGE = "features.html"  # Evidently's DataDriftPreset report, tables only
MD5 = re.compile(r"[0-9a-f]{32}(\.dir)?")
CACHE = Path(".dvc", "cache", "files", "md5")


def champion_version(ctx: RunContext) -> Any:
    """The champion's registry entry, or None when there is none yet."""
    return alias_version(ctx.tracker().client, ctx.settings.registry.model_name, CHAMPION)


def materialize(
    project_dir: str, settings: Settings, rev: str, into: Path, champion: Any = None
) -> tuple[str, Path]:
    """(data version, folder holding its files) of a revision: `workspace` (the data folder as
    it is), `champion` (the version its registry entry was trained on), an md5, a git revision."""
    if rev == "workspace":
        return data_version(project_dir, settings), Path(project_dir, settings.data.dir)
    if rev == CHAMPION:
        if champion is None:
            raise DriftError(f"no {settings.registry.model_name}@champion in the registry yet")
        rev = champion.tags.get("data_version") or ""
        if not rev:
            raise DriftError(f"{settings.registry.model_name} v{champion.version}: no data_version tag")
    into.mkdir(parents=True, exist_ok=True)
    if MD5.fullmatch(rev):
        md5 = rev.removesuffix(".dir")
        return md5 + ".dir", _from_cache(project_dir, md5, into)
    return _from_git(project_dir, settings, rev, into)


def _from_cache(project_dir: str, md5: str, into: Path) -> Path:
    """The files of a `<md5>.dir` version from the project's DVC cache (or its local remote)."""
    for root in (Path(project_dir, CACHE), Path(project_dir, ".modelmill", "dvc-remote", "files", "md5")):
        manifest = root / md5[:2] / f"{md5[2:]}.dir"
        if manifest.exists():
            for entry in json.loads(manifest.read_text()):
                source = root / entry["md5"][:2] / entry["md5"][2:]
                if not source.exists():
                    raise DriftError(f"data version {md5}.dir: {entry['relpath']} missing in {root}")
                shutil.copyfile(source, into / entry["relpath"])
            return into
    raise DriftError(f"data version {md5}.dir is in neither the DVC cache nor the local remote (dvc fetch)")


def _from_git(project_dir: str, settings: Settings, rev: str, into: Path) -> tuple[str, Path]:
    """The data version that data.dvc records at git revision `rev`, read through DVC's API."""
    import dvc.api

    pointer = f"{settings.data.dir}.dvc"
    shown = subprocess.run(["git", "show", f"{rev}:{pointer}"], cwd=project_dir, capture_output=True,
                           text=True, check=False)  # fmt: skip
    if shown.returncode:
        raise DriftError(f"'{rev}' is neither a data version md5 nor a git revision with {pointer}")
    md5 = ((yaml.safe_load(shown.stdout) or {}).get("outs") or [{}])[0].get("md5", "")
    for name in (SCHEMA_FILE, ITEMS_FILE, LABELS_FILE):
        with dvc.api.open(f"{settings.data.dir}/{name}", repo=project_dir, rev=rev, mode="rb") as src:
            (into / name).write_bytes(src.read())
    return md5, into


def drift_report(ctx: RunContext, reference: str, current: str) -> DriftReport:
    """The champion's view of `reference` against `current` (a revision or a path of inputs)."""
    champion = champion_version(ctx)
    if champion is None:
        raise DriftError(f"drift needs a champion: no {ctx.settings.registry.model_name}@champion yet")
    work = Path(ctx.work_dir, "drift")
    loaded = load_verified(MlflowClient(), ctx.settings.registry.model_name, str(champion.version))
    prep = champion_preprocessor(loaded.meta)
    ref_version, ref_dir = materialize(ctx.project_dir, ctx.settings, reference, work / "reference", champion)
    ref_sample, schema = sample_of_dataset(ref_dir, ref_version, prep)
    inputs = Path(ctx.project_dir, current)
    if current not in ("workspace", CHAMPION) and inputs.exists():
        cur_sample = sample_of_inputs(inputs, schema, current, prep)
    else:
        cur_version, cur_dir = materialize(ctx.project_dir, ctx.settings, current, work / "current", champion)
        cur_sample = sample_of_dataset(cur_dir, cur_version, prep)[0]
    return compare(
        loaded.module, ref_sample, cur_sample, list(schema.classes), ctx.settings.drift,
        feature_html=Path(ctx.work_dir, REPORT_DIR, FEATURES_PAGE),
    )  # fmt: skip


def champion_preprocessor(meta: dict[str, Any]) -> Preprocessor | None:
    """The champion's fitted preprocessor for kinds other than image (whose pixels the drift
    check reads as they are); None for images and for models saved without one."""
    state = meta.get("preprocessing")
    if not state or state.get("kind", "image") == "image":
        return None
    return preprocessor_from_state(state)


def publish(ctx: RunContext, report: DriftReport) -> dict[str, Any]:
    """Report files on the MLflow run, tags with both versions, a markdown artifact, the event."""
    from prefect.events import emit_event

    tracker = ctx.tracker()
    folder = Path(ctx.work_dir, REPORT_DIR)
    for path in write_report(report, folder).values():
        tracker.log_artifact(path, "drift")
    if (folder / FEATURES_PAGE).exists():  # Evidently's page of the per-feature tests (tables)
        tracker.log_artifact(folder / FEATURES_PAGE, "drift")
    tracker.set_tags({"drift_reference": report.reference, "drift_current": report.current,
                      "drift": "detected" if report.drifted else "none"})  # fmt: skip
    tracker.log_metrics({f"drift_p_{t.name.replace(':', '_')}": t.p_value for t in report.tests[:50]})
    markdown = to_markdown(report)
    create_markdown_artifact(markdown=markdown, key="drift-report", description="modelmill drift report")
    if report.drifted:
        emit_event(event=EVENT, resource={"prefect.resource.id": f"modelmill.data.{report.current}"},
                   payload={"reference": report.reference, "current": report.current,
                            "tests": report.drifted_tests(), "mlflow_run_id": ctx.run_id})  # fmt: skip
    get_run_logger().info("drift %s -> %s: %s", report.reference, report.current, verdict(report))
    return {"drifted": report.drifted, "markdown": markdown, "report": report.to_dict()}


@stage("drift")
def check_drift(ctx: RunContext, new_version: str) -> dict[str, Any] | None:
    """The new data version against the champion's; None when off, without a champion, or the same."""
    logger = get_run_logger()
    champion = None if not ctx.settings.drift.enabled else champion_version(ctx)
    if champion is None or champion.tags.get("data_version") in (None, "", new_version):
        logger.info("drift: not checked (off, no champion yet, or the champion's own data version)")
        return None
    try:
        report = drift_report(ctx, CHAMPION, "workspace")
    except (DriftError, DatasetError) as exc:  # e.g. a kind without raw-pixel inputs, a reference
        # version the DVC cache no longer holds: the nightly goes on, the report says why
        logger.warning("drift: not checked: %s", exc)
        ctx.tracker().set_tags({"drift": "not checked", "drift_error": str(exc)[:500]})
        return None
    return publish(ctx, report)


@stage("drift-check")
def check_revisions(ctx: RunContext, reference: str, current: str) -> dict[str, Any]:
    """`modelmill drift --from REFERENCE --to CURRENT` on an open run."""
    return publish(ctx, drift_report(ctx, reference, current))


def stop_for_drift(settings: Settings, drift: dict[str, Any] | None) -> bool:
    """drift.on_drift: `fail` raises on drift; `retrain` stops the run (no training) when the
    check ran and found none; `warn` never stops (the report and the event are the warning)."""
    drifted = bool(drift and drift["drifted"])
    if drifted and settings.drift.on_drift == "fail":
        raise DriftDetected(f"drift detected ({', '.join(_names(drift))}); drift.on_drift is fail")
    return settings.drift.on_drift == "retrain" and drift is not None and not drifted


def _names(drift: dict[str, Any]) -> list[str]:
    return [t["name"] for t in drift["report"]["tests"] if t["drifted"]]
