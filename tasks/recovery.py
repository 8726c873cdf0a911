"""Finish what a killed writer left half-done (journal entries of data/ writes) before data/ is read."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger

from modelmill import journal
from modelmill.config import LabelsConfig, Settings
from modelmill.errors import DatasetError
from modelmill.labels import EXPORTS_DIR, import_exports


def finish_pending(project_dir: str | Path, settings: Settings) -> list[str]:
    """Complete every interrupted operation the journal records; returns their names."""
    done = []
    for entry in journal.pending(project_dir):
        _log(
            f"finishing an interrupted {entry.op} (PID {entry.pid}, from data version {entry.version_before})"
        )
        if entry.op == "bootstrap":
            from tasks.data import bootstrap_data

            bootstrap_data(project_dir, settings, entry.details.get("source"))
        elif entry.op == "import-labels":
            finish_label_import(project_dir, settings, entry)
        else:
            raise DatasetError(
                f"{journal.journal_dir(project_dir)}/{entry.op}.json: unknown interrupted operation; "
                "inspect data/ (`modelmill doctor`) and delete the entry"
            )
        done.append(entry.op)
    return done


def finish_label_import(project_dir: str | Path, settings: Settings, entry: journal.Entry) -> None:
    """Re-import the exports the entry names (the merge is idempotent), version data/, end the entry."""
    from tasks.data import push_data, version_data

    data_dir = Path(project_dir, settings.data.dir)
    paths = [
        archived or original for archived, original in _export_files(data_dir, entry) if archived or original
    ]
    if paths:
        cfg = LabelsConfig(**entry.details.get("labels", {}))
        import_exports(data_dir, paths, cfg)
        version_data(project_dir, settings, "import-labels: finished after an interruption")
        push_data(project_dir, settings)
    journal.end(project_dir, entry.op)


def _export_files(data_dir: Path, entry: journal.Entry) -> list[tuple[str | None, str | None]]:
    """(archived copy, original file) of each export of the entry, None where a file is gone."""
    out = []
    for sha, original in zip(entry.details.get("exports", []), entry.details.get("paths", []), strict=True):
        archived = next(iter(sorted(Path(data_dir, EXPORTS_DIR).glob(f"{sha}.*"))), None)
        out.append((str(archived) if archived else None, original if Path(original).is_file() else None))
    return out


def _log(message: str) -> None:
    try:
        get_run_logger().warning(message)
    except Exception:  # noqa: BLE001 - outside a flow run (doctor, tests): plain print
        print(message)
