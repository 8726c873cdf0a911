"""The safe model folder: round trip, and every kind of tampering refused before a byte is parsed."""

import json
import os
import pickle
import struct
import zlib

import pytest
import torch

from modelmill import modelfile
from modelmill.compression.storage import Architecture, Recipe, apply_recipe, from_bytes, to_bytes
from modelmill.config import ModelConfig
from modelmill.errors import UnsafeModelError
from modelmill.models import build_model, spec_of

CLASSES = [str(i) for i in range(10)]


class Payload:
    """Unpickling this creates the canary file: proof that a loader unpickled."""

    def __init__(self, canary):
        self.canary = str(canary)

    def __reduce__(self):
        return (open, (self.canary, "w"))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model((8, 8), 10, ModelConfig(width=4, hidden=16)).eval()


@pytest.fixture
def folder(model, tmp_path):
    path = tmp_path / "model"
    modelfile.save(path, model, classes=CLASSES, input_example=torch.zeros(2, 1, 8, 8))
    return path


def refit(folder):
    """The manifest an attacker who can write the folder would forge to match their files."""
    return modelfile.manifest_of(folder)


def test_round_trip_gives_the_same_logits_and_meta(model, folder):
    loaded = modelfile.load(folder)
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(loaded.module(x), model(x))
    assert loaded.classes == CLASSES
    assert loaded.meta["input"] == {"shape": [-1, 1, 8, 8], "dtype": "float32"}
    assert sorted(loaded.manifest.files) == ["model.json", "model.safetensors"]


def test_manifest_json_is_canonical_and_parses_back(folder):
    manifest = modelfile.manifest_of(folder)
    again = modelfile.Manifest.from_json(manifest.to_json(), "x")
    assert again == manifest and again.digest == manifest.digest


def test_a_changed_byte_is_refused_naming_the_file(folder):
    manifest = modelfile.manifest_of(folder)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(UnsafeModelError, match="model.safetensors: sha256 does not match"):
        modelfile.load(folder, manifest)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: (f / "extra.json").write_text("{}"), "extra.json: not in the manifest"),
        (lambda f: (f / "model.json").unlink(), "model.json: in the manifest but missing"),
        (lambda f: (f / "model.json").write_text("{ }"), "model.json: size does not match"),
    ],
)
def test_missing_extra_or_resized_files_are_refused(folder, change, message):
    manifest = modelfile.manifest_of(folder)
    change(folder)
    with pytest.raises(UnsafeModelError, match=message):
        modelfile.load(folder, manifest)


def test_a_symlink_is_refused_even_when_the_manifest_lists_it(folder, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"token": 1}')
    listed = {**modelfile.manifest_of(folder).files, "tokenizer.json": (modelfile.sha256_of(secret), 12)}
    os.symlink(secret, folder / "tokenizer.json")
    with pytest.raises(UnsafeModelError, match="tokenizer.json: is a symbolic link"):
        modelfile.load(folder, modelfile.Manifest(listed))


@pytest.mark.parametrize("name", ["../outside.json", "/etc/passwd", "a/../../b.json", "a\\b.json", ""])
def test_path_traversing_manifest_names_are_refused(name):
    text = json.dumps({"format": modelfile.MANIFEST_FORMAT, "files": {name: ["0" * 64, 1]}})
    with pytest.raises(UnsafeModelError, match="escapes the model folder"):
        modelfile.Manifest.from_json(text, "v9")


def test_oversize_files_are_refused_before_hashing(folder):
    with pytest.raises(UnsafeModelError, match="oversize"):
        modelfile.load(folder, limits=modelfile.Limits(max_file_bytes=100))


@pytest.mark.parametrize(
    ("name", "blob"),
    [
        ("model.safetensors", "pickle"),
        ("weights.pt", "pickle"),
        ("model.json", "zip"),
        ("tokenizer.json", "gzip"),
        ("vocab.txt", "zlib"),
    ],
)
def test_pickles_archives_and_other_types_are_refused_without_unpickling(folder, tmp_path, name, blob):
    canary = tmp_path / "canary"
    raw = pickle.dumps(Payload(canary), protocol=4)
    data = {
        "pickle": raw,
        "zip": _torch_zip(Payload(canary)),
        "gzip": __import__("gzip").compress(raw),
        "zlib": zlib.compress(raw),
    }[blob]
    (folder / name).write_bytes(data)
    with pytest.raises(UnsafeModelError, match=name.replace(".", r"\.")):
        modelfile.load(folder, refit(folder))
    assert not canary.exists()


def _torch_zip(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _header(tensors: dict) -> bytes:
    header = json.dumps(tensors).encode()
    return struct.pack("<Q", len(header)) + header


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (struct.pack("<Q", 10**12) + b"{}", "header length"),
        (
            _header({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}}) + b"\0" * 16,
            "bad safetensors",
        ),
        (
            _header({"w": {"dtype": "PY", "shape": [1], "data_offsets": [0, 4]}}) + b"\0" * 4,
            "bad safetensors",
        ),
        (
            _header({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}) + b"\0" * 8,
            "trailing bytes",
        ),
        (_header([1, 2]), "not a mapping"),
    ],
)
def test_tampered_safetensors_headers_are_refused(folder, data, message):
    (folder / "model.safetensors").write_bytes(data)
    with pytest.raises(UnsafeModelError, match=message):
        modelfile.load(folder, refit(folder))


def test_a_spec_that_does_not_match_the_weights_is_refused_without_allocating(folder):
    meta = json.loads((folder / "model.json").read_text())
    meta["spec"]["config"]["width"] = 10**6  # would be terabytes if built for real
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UnsafeModelError, match="wrong shape or dtype"):
        modelfile.load(folder, refit(folder))


def test_an_unknown_family_is_refused(folder):
    meta = json.loads((folder / "model.json").read_text())
    meta["spec"]["family"] = "os.system"
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UnsafeModelError, match="spec cannot be built"):
        modelfile.load(folder, refit(folder))


def test_a_folder_is_written_once(model, folder):
    with pytest.raises(UnsafeModelError, match="already exists"):
        modelfile.save(folder, model, classes=CLASSES, input_example=torch.zeros(1, 1, 8, 8))


def test_extra_files_are_hashed_and_names_checked(model, tmp_path):
    manifest = modelfile.save(
        tmp_path / "m",
        model,
        classes=CLASSES,
        input_example=torch.zeros(1, 1, 8, 8),
        extra_files={"tokenizer/vocab.txt": b"a\nb\n"},
    )
    assert manifest.files["tokenizer/vocab.txt"][1] == 4
    with pytest.raises(UnsafeModelError, match="escapes"):
        modelfile.save(
            tmp_path / "n",
            model,
            classes=CLASSES,
            input_example=torch.zeros(1, 1, 8, 8),
            extra_files={"../x.txt": b""},
        )


@pytest.mark.parametrize("quantization", [None, "dynamic_int8", "static_int8"])
def test_quantized_variants_round_trip_exactly_without_pickle(model, quantization, tmp_path):
    arch = Architecture(spec_of(model))
    recipe = Recipe(quantization)
    variant = apply_recipe(model, arch, recipe, [torch.rand(8, 1, 8, 8)])
    payload = to_bytes(variant, arch, recipe)
    assert b"\x80\x04" not in zlib.decompress(payload)[:2]
    x = torch.rand(6, 1, 8, 8)
    assert torch.equal(from_bytes(payload)[0](x), variant(x))


def test_a_zlib_bomb_is_refused_at_the_bound(model):
    arch = Architecture(spec_of(model))
    with pytest.raises(UnsafeModelError, match="zlib bomb"):
        from_bytes(zlib.compress(b"\0" * 10_000_000), max_bytes=1_000_000)
    assert from_bytes(to_bytes(model, arch, Recipe()))[1] == arch
