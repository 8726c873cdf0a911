"""Red team: crafted malicious versions aliased `champion` in a real registry. Each is refused by
the verified loader naming the version and the file, its payload never runs (no canary file),
and the previous champion still loads and predicts the same."""

import gzip
import io
import json
import os
import pickle
import shutil
import struct
import zlib
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch
import yaml

from modelmill import modelfile
from modelmill.errors import UnsafeModelError
from tasks.modelstore import MANIFEST_TAG, load_verified
from tasks.registry import CHAMPION, alias_version, load_version

NAME = "redteam-classifier"
WEIGHTS = "data/model/model.safetensors"


class Payload:
    """Unpickling this creates the canary file."""

    def __init__(self, canary: Path):
        self.canary = str(canary)

    def __reduce__(self):
        return (open, (self.canary, "w"))


def torch_zip(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def canary_module(canary: Path) -> str:
    return f"open({str(canary)!r}, 'w').close()\ndef _load_pyfunc(path, config=None):\n    return None\n"


def edit_mlmodel(folder: Path, change) -> None:
    conf = yaml.safe_load((folder / "MLmodel").read_text())
    change(conf)
    (folder / "MLmodel").write_text(yaml.safe_dump(conf))


def set_pyfunc(**values):
    return lambda conf: conf["flavors"]["python_function"].update(values)


# --- the corpus: (case id, how the folder is altered, the refusal expected) -------------------


def _pt_in_pytorch_flavor(f: Path, canary: Path) -> None:
    (f / "data/model.pth").write_bytes(torch_zip(Payload(canary)))
    edit_mlmodel(f, lambda c: c["flavors"].update(pytorch={"model_data": "data/model.pth"}))


def _pkl_python_model(f: Path, canary: Path) -> None:
    (f / "python_model.pkl").write_bytes(pickle.dumps(Payload(canary)))
    edit_mlmodel(f, set_pyfunc(loader_module="mlflow.pyfunc.model", python_model="python_model.pkl"))


def _pkl_with_our_loader(f: Path, canary: Path) -> None:
    (f / "python_model.pkl").write_bytes(pickle.dumps(Payload(canary)))
    edit_mlmodel(f, set_pyfunc(python_model="python_model.pkl"))


def _gzip_pickle_as_json(f: Path, canary: Path) -> None:
    (f / "data/model/tokenizer.json").write_bytes(gzip.compress(pickle.dumps(Payload(canary))))


def _torch_zip_as_safetensors(f: Path, canary: Path) -> None:
    (f / WEIGHTS).write_bytes(torch_zip({"state": Payload(canary)}))


def _torch_zip_as_vocab(f: Path, canary: Path) -> None:
    (f / "data/model/vocab.txt").write_bytes(torch_zip(Payload(canary)))


def _pickle_under_odd_extension(f: Path, canary: Path) -> None:
    (f / "data/model/weights.ckpt").write_bytes(pickle.dumps(Payload(canary), protocol=2))


def _loader_elsewhere(f: Path, canary: Path) -> None:
    (f / "evil_loader.txt").write_text("not used: the loader is an installed module")
    edit_mlmodel(f, set_pyfunc(loader_module="os"))


def _code_folder(f: Path, canary: Path) -> None:
    (f / "code/tasks").mkdir(parents=True)
    (f / "code/tasks/pyfunc_model.py").write_text(canary_module(canary))
    (f / "code/tasks/__init__.txt").write_text("")
    edit_mlmodel(f, set_pyfunc(code="code"))


def _data_outside(f: Path, canary: Path) -> None:
    edit_mlmodel(f, set_pyfunc(data="../../outside"))


def _tampered_header(f: Path, canary: Path) -> None:
    data = (f / WEIGHTS).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    key = next(k for k in header if k != "__metadata__")
    header[key]["data_offsets"][1] += 10**9  # points far past the file
    raw = json.dumps(header).encode()
    (f / WEIGHTS).write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])


def _zlib_bomb(f: Path, canary: Path) -> None:
    (f / WEIGHTS).write_bytes(zlib.compress(b"\0" * 50_000_000, 9))  # 50 MB from ~50 KB


def _huge_spec(f: Path, canary: Path) -> None:
    meta = json.loads((f / "data/model/model.json").read_text())
    meta["spec"]["config"]["width"] = 10**7
    (f / "data/model/model.json").write_text(json.dumps(meta))


def _unknown_family(f: Path, canary: Path) -> None:
    meta = json.loads((f / "data/model/model.json").read_text())
    meta["spec"]["family"] = "builtins.exec"
    (f / "data/model/model.json").write_text(json.dumps(meta))


FORGED = [  # the attacker also forges a manifest matching their files
    ("pt-pickle-in-pytorch-flavor", _pt_in_pytorch_flavor, "data/model.pth"),
    ("pkl-python-model", _pkl_python_model, "python_model.pkl"),
    ("pkl-beside-our-loader", _pkl_with_our_loader, "python_model.pkl"),
    ("gzip-pickle-as-json", _gzip_pickle_as_json, "tokenizer.json: is a gzip"),
    ("torch-zip-as-safetensors", _torch_zip_as_safetensors, "model.safetensors: is a zip"),
    ("torch-zip-as-vocab", _torch_zip_as_vocab, "vocab.txt: is a zip"),
    ("pickle-odd-extension", _pickle_under_odd_extension, "weights.ckpt"),
    ("loader-module-elsewhere", _loader_elsewhere, "loader_module 'os'"),
    ("code-folder", _code_folder, "code"),
    ("data-path-outside", _data_outside, "escapes"),
    ("tampered-safetensors-header", _tampered_header, "bad safetensors header entry"),
    ("zlib-bomb-as-weights", _zlib_bomb, "model.safetensors: is a zlib"),
    ("huge-spec", _huge_spec, "wrong shape or dtype"),
    ("unknown-family", _unknown_family, "spec cannot be built"),
]


@pytest.fixture
def canary(tmp_path) -> Path:
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a payload ran"


def pin_uris(uri: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def artifact_dir(run) -> Path:
    return Path(unquote(urlparse(run.info.artifact_uri).path)) / "model"


def publish(registry, folder: Path, tags: dict[str, str], after=None) -> str:
    """Log `folder` as a run's artifacts, register it with `tags`, alias it champion."""
    client = registry.client
    run = client.create_run(registry.experiment_id, run_name="attacker")
    client.log_artifacts(run.info.run_id, str(folder), "model")
    if after:
        after(artifact_dir(run))
    version = client.create_model_version(NAME, f"{run.info.artifact_uri}/model", run.info.run_id, tags=tags)
    client.set_registered_model_alias(NAME, CHAMPION, version.version)
    return str(version.version)


def forged_tags(folder: Path) -> dict[str, str]:
    return {MANIFEST_TAG: modelfile.manifest_of(folder, ignore=()).to_json()}


def good_copy(registry, tmp_path: Path) -> Path:
    return Path(shutil.copytree(registry.good_dir, tmp_path / "crafted"))


def assert_refused(registry, version: str, match: str) -> None:
    pin_uris(registry.uri)
    champion = alias_version(registry.client, NAME, CHAMPION)
    assert str(champion.version) == version
    with pytest.raises(UnsafeModelError, match=f"{NAME} v{version}: .*{match}"):
        load_version(NAME, champion.version)
    # the previous champion keeps working, and the alias goes back to it
    previous = load_verified(registry.client, NAME, registry.good_version).module
    with torch.no_grad():
        assert torch.equal(previous(registry.x), registry.good_logits)
    registry.client.set_registered_model_alias(NAME, CHAMPION, registry.good_version)


@pytest.mark.parametrize(("case", "alter", "match"), FORGED, ids=[c[0] for c in FORGED])
def test_forged_versions_are_refused_and_nothing_runs(registry, tmp_path, canary, case, alter, match):
    folder = good_copy(registry, tmp_path)
    alter(folder, canary)
    version = publish(registry, folder, forged_tags(folder))
    assert_refused(registry, version, match)


def test_manifest_mismatch_after_registration_is_refused(registry, tmp_path, canary):
    """Weights swapped in the artifact store after registration: the recorded manifest catches it."""
    folder = good_copy(registry, tmp_path)
    tags = forged_tags(folder)

    def rewrite(stored: Path) -> None:
        from safetensors.torch import load_file, save_file

        weights = load_file(stored / WEIGHTS)
        save_file({k: torch.zeros_like(v) for k, v in weights.items()}, stored / WEIGHTS)

    version = publish(registry, folder, tags, after=rewrite)
    assert_refused(registry, version, "model.safetensors: sha256 does not match the manifest")


def test_a_version_without_a_manifest_is_refused(registry, tmp_path, canary):
    version = publish(registry, good_copy(registry, tmp_path), {})
    assert_refused(registry, version, "no manifest recorded")


def test_an_extra_file_not_in_the_manifest_is_refused(registry, tmp_path, canary):
    folder = good_copy(registry, tmp_path)
    tags = forged_tags(folder)
    version = publish(
        registry,
        folder,
        tags,
        after=lambda d: (d / "python_model.pkl").write_bytes(pickle.dumps(Payload(canary))),
    )
    assert_refused(registry, version, "python_model.pkl: not in the manifest")


def test_a_path_traversing_manifest_entry_is_refused(registry, tmp_path, canary):
    folder = good_copy(registry, tmp_path)
    manifest = json.loads(forged_tags(folder)[MANIFEST_TAG])
    manifest["files"]["../../../PWNED"] = ["0" * 64, 1]
    version = publish(registry, folder, {MANIFEST_TAG: json.dumps(manifest)})
    assert_refused(registry, version, "escapes the model folder")


def test_a_symlink_in_the_artifact_store_is_refused(registry, tmp_path, canary):
    secret = tmp_path / "secret.json"
    secret.write_text('{"password": "hunter2"}')
    folder = good_copy(registry, tmp_path)
    manifest = json.loads(forged_tags(folder)[MANIFEST_TAG])
    manifest["files"]["data/model/tokenizer.json"] = [modelfile.sha256_of(secret), secret.stat().st_size]
    link = lambda d: os.symlink(secret, d / "data/model/tokenizer.json")  # noqa: E731
    version = publish(registry, folder, {MANIFEST_TAG: json.dumps(manifest)}, after=link)
    assert_refused(registry, version, "tokenizer.json: is a symbolic link")


def test_the_good_champion_is_not_refused(registry):
    """Zero false refusals: the project's own model loads through every path."""
    import mlflow.pyfunc

    pin_uris(registry.uri)
    module = load_version(NAME, registry.good_version)
    with torch.no_grad():
        assert torch.equal(module(registry.x), registry.good_logits)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}/{registry.good_version}")
    assert torch.allclose(torch.from_numpy(pyfunc.predict(registry.x.numpy())), registry.good_logits)
