"""Models in the MLflow registry in the safe format: logged as a pyfunc whose loader is
`tasks.pyfunc_model`, the sha256 manifest of every file recorded on the model version, and
the one verified loader every load goes through (champion scoring, compression, export-tasks).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from modelmill import modelfile
from modelmill.errors import UnsafeModelError
from modelmill.modelfile import Limits, LoadedModel, Manifest

LOADER_MODULE = "tasks.pyfunc_model"
MANIFEST_TAG = "modelmill.manifest"
SIGNATURE_TAG = "modelmill.manifest_signature"
# the logits the stored input example gave when the version was logged (the serving smoke check)
EXAMPLE_OUTPUT_TAG = "modelmill.example_output"
DATA_DIR = "data/model"
# files of an MLflow model directory around the model folder: MLmodel, envs, examples
MODEL_DIR_SUFFIXES = modelfile.MODEL_SUFFIXES | {"", ".yaml", ".txt", ".json"}
# written by MLflow into the model's folder when a version is registered (after the manifest is
# taken); never read by modelmill's loader, only bounded in size
REGISTRATION_FILE = "registered_model_meta"
PYFUNC_KEYS = {
    "loader_module",
    "data",
    "code",
    "env",
    "python_version",
    "predict_fn",
    "streamable",
    "model_config",
}


def log_folder(tracker, folder: str | Path, input_example, name: str = "model") -> tuple[str, dict[str, str]]:
    """Log a model folder as a pyfunc (our loader, no pickle) into the tracker's run; returns the
    model URI and the version tags that record its manifest (pass them to register_model)."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    import mlflow
    from tasks.pyfunc_model import _load_pyfunc
    from tasks.tracking import MODEL_PIP_REQUIREMENTS

    output = _load_pyfunc(str(folder)).predict(input_example)
    with mlflow.start_run(run_id=tracker.run_id):
        info = mlflow.pyfunc.log_model(
            name=name,
            loader_module=LOADER_MODULE,
            data_path=str(Path(folder).resolve()),
            signature=infer_signature(input_example, output),
            input_example=input_example,
            pip_requirements=MODEL_PIP_REQUIREMENTS,
        )
    tracker.client.update_run(tracker.run_id, status="RUNNING")  # the flow still owns the run
    tags = manifest_tags(manifest_of_uri(info.model_uri))
    tags[EXAMPLE_OUTPUT_TAG] = json.dumps(np.asarray(output, dtype=np.float64).round(6).tolist())
    return info.model_uri, tags


def register_version(model_uri: str, name: str, tags: dict[str, str]) -> Any:
    """`mlflow.register_model`, its notices ("Registered model ... already exists") sent to the
    log instead of the terminal: MLflow prints them to stderr, not through its logger."""
    import io
    import logging

    import mlflow

    with contextlib.redirect_stderr(io.StringIO()) as said:
        version = mlflow.register_model(model_uri, name, tags=tags)
    for line in said.getvalue().splitlines():
        logging.getLogger("mlflow.tracking").info(line)
    return version


def log_model(tracker, model, input_example, classes: list[str], work_dir: str | Path, **meta) -> tuple:
    """Save a float modelmill model in the safe format and log it (see log_folder)."""
    import torch

    folder = Path(tempfile.mkdtemp(prefix="safe-model-", dir=work_dir), "model")
    modelfile.save(folder, model, classes=classes, input_example=torch.as_tensor(input_example), **meta)
    return log_folder(tracker, folder, input_example)


def manifest_of_uri(model_uri: str) -> Manifest:
    """The manifest of a logged model as stored (downloaded back: what later loads will see)."""
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="modelmill-manifest-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        return modelfile.manifest_of(local, ignore=(REGISTRATION_FILE,))


def manifest_tags(manifest: Manifest) -> dict[str, str]:
    """Version tags: the manifest, and its Ed25519 signature when a signing key is configured."""
    from tasks.signing import sign

    tags = {MANIFEST_TAG: manifest.to_json()}
    signature = sign(manifest.to_json().encode())
    if signature:
        tags[SIGNATURE_TAG] = signature
    return tags


def load_verified(
    client: Any, name: str, version: str, limits: Limits = Limits(), into: Path | None = None
) -> LoadedModel:
    """Download, verify and build `name` version `version`; UnsafeModelError names the version and
    the file when anything is off. Nothing from the artifact is imported or unpickled. `into`: an
    empty folder the verified artifacts stay in (default: a temporary folder, removed)."""
    mv = client.get_model_version(name, str(version))
    where = f"{name} v{version}"
    manifest = Manifest.from_json(mv.tags.get(MANIFEST_TAG), where)
    from tasks.signing import verify

    verify(manifest.to_json().encode(), mv.tags.get(SIGNATURE_TAG), where)
    folder = (
        contextlib.nullcontext(str(into)) if into else tempfile.TemporaryDirectory(prefix="modelmill-load-")
    )
    with folder as tmp:
        # the version's own storage location, through this client: a `models:/m-...` source would
        # be resolved by MLflow on its *global* tracking URI, the wrong store in a process that
        # holds clients for several (a server, a worker, the tests)
        source = client.get_model_version_download_uri(name, str(version)) or mv.source
        local = Path(download_checked(source, manifest, Path(tmp), where, limits))
        modelfile.verify_tree(local, manifest, where, limits, MODEL_DIR_SUFFIXES, ignore=(REGISTRATION_FILE,))
        data = check_mlmodel(local, manifest, where, limits)
        inner = Manifest(
            {
                k[len(data) + 1 :]: v
                for k, v in manifest.files.items()
                if k.startswith(data + "/")
                and k[len(data) + 1 :] not in (modelfile.MANIFEST, modelfile.SIGNATURE)
            }
        )
        return modelfile.load(local / data, inner, where, limits)


def download_checked(source: str, manifest: Manifest, dst: Path, where: str, limits: Limits) -> str:
    """The version's artifacts listed first (names, count, sizes against the manifest), then copied."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    repo = get_artifact_repository(source)
    inner = repo.repo if isinstance(repo, ModelsArtifactRepository) else repo
    if isinstance(inner, LocalArtifactRepository):  # refuse links before a copy follows them
        modelfile.list_files(Path(inner.artifact_dir), where, limits)
    listed = list_recursive(repo, "", where, limits)
    for path, size in listed.items():
        modelfile.check_relative(path, where)
        if path == REGISTRATION_FILE and (size or 0) <= 64 * 1024:
            continue
        if path not in manifest.files:
            raise UnsafeModelError(f"{where}: {path}: not in the manifest")
        if size is not None and size != manifest.files[path][1]:
            raise UnsafeModelError(f"{where}: {path}: size does not match the manifest")
    if missing := sorted(set(manifest.files) - set(listed)):
        raise UnsafeModelError(f"{where}: {missing[0]}: in the manifest but missing")
    return str(repo.download_artifacts("", dst_path=str(dst)))


def list_recursive(repo, path: str, where: str, limits: Limits) -> dict[str, int | None]:
    found: dict[str, int | None] = {}
    for info in repo.list_artifacts(path or None):
        if info.is_dir:
            found.update(list_recursive(repo, info.path, where, limits))
        else:
            found[info.path] = info.file_size
        if len(found) > limits.max_files:
            raise UnsafeModelError(f"{where}: more than {limits.max_files} artifact files")
    return found


def check_mlmodel(local: Path, manifest: Manifest, where: str, limits: Limits) -> str:
    """MLmodel says: only the python_function flavor, loader `tasks.pyfunc_model`, no code paths,
    no python_model pickle, data inside the folder. Returns the data folder's relative path."""
    path = local / "MLmodel"
    if "MLmodel" not in manifest.files or path.stat().st_size > limits.max_json_bytes:
        raise UnsafeModelError(f"{where}: MLmodel: missing or oversize")
    try:
        conf = yaml.safe_load(path.read_text())
        flavors: dict[str, Any] = conf["flavors"]
        pyfunc: dict[str, Any] = flavors["python_function"]
    except (yaml.YAMLError, KeyError, TypeError):
        raise UnsafeModelError(f"{where}: MLmodel: not an MLflow pyfunc model") from None
    if set(flavors) != {"python_function"}:
        other = sorted(set(flavors) - {"python_function"})
        raise UnsafeModelError(f"{where}: MLmodel: flavor {other[0]!r} is not modelmill's safe format")
    if pyfunc.get("loader_module") != LOADER_MODULE:
        raise UnsafeModelError(
            f"{where}: MLmodel: loader_module {pyfunc.get('loader_module')!r} is not {LOADER_MODULE!r}"
        )
    if pyfunc.get("code") or any(k == "code" or k.startswith("code/") for k in manifest.files):
        raise UnsafeModelError(f"{where}: MLmodel: carries a code/ folder (code would run at load)")
    if odd := sorted(set(pyfunc) - PYFUNC_KEYS):
        raise UnsafeModelError(f"{where}: MLmodel: python_function key {odd[0]!r} is not allowed")
    data = pyfunc.get("data")
    if not isinstance(data, str):
        raise UnsafeModelError(f"{where}: MLmodel: no data folder")
    modelfile.check_relative(data, where)
    return data
