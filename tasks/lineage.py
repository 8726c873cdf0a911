"""Where a model version comes from: its data version, code, configuration, Prefect flow run,
tuning study, source model (compressed versions) and its audit records; and which versions were
trained on a data version."""

from __future__ import annotations

import os
from typing import Any

from modelmill.errors import RegistryConflict
from tasks import audit

# the sections of the resolved config that shape the model, shown inline (the rest: the MLflow run)
CONFIG_PREVIEW = ("data.", "split.", "model.", "train.", "gate.")


def version_lineage(client: Any, name: str, version: str) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        raise RegistryConflict(f"{name} has no version {version}") from None
    tags = dict(mv.tags)
    run = client.get_run(mv.run_id) if mv.run_id else None
    params = dict(run.data.params) if run else {}
    run_tags = dict(run.data.tags) if run else {}
    flow_run = tags.get("prefect_flow_run_id", "")
    ui = os.environ.get("PREFECT_UI_URL", "").rstrip("/")
    return {
        "model": f"{name}/{version}",
        "data_version": tags.get("data_version", ""),
        "git_commit": tags.get("git_commit", ""),
        "code_version": tags.get("code_version", ""),
        "mlflow_run_id": mv.run_id,
        "prefect_flow_run": f"{tags.get('prefect_flow_run_name', '')} {flow_run}".strip(),
        "prefect_flow_run_link": f"{ui}/runs/flow-run/{flow_run}" if ui and flow_run else "",
        "tuning_study": run_tags.get("optuna.study_name", ""),
        "tuning_run_id": run_tags.get("tuning_run_id", ""),
        "source_model": f"{tags['source_model']}/{tags['source_version']}" if "source_model" in tags else "",
        "config": params,
        "audit": [
            r.to_json() for r in audit.history(client, name) if str(version) in (r.to_version, r.from_version)
        ],
    }


def versions_of_data(client: Any, data_version: str) -> list[tuple[str, str]]:
    """(model name, version) of every registered version trained on `data_version`."""
    found = client.search_model_versions(f"tags.data_version = '{data_version}'")
    return sorted(((str(v.name), str(v.version)) for v in found), key=lambda nv: (nv[0], int(nv[1])))
