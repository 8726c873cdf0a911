"""The safe model format: a folder of safetensors weights and JSON (spec, classes, preprocessing)
with a sha256 manifest of every file, verified before anything is read; nothing is unpickled."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as dump_safetensors
from torch import nn

from modelmill.errors import UnsafeModelError
from modelmill.models import Spec, build_from_spec, spec_of

FORMAT = "modelmill.model/1"
MANIFEST_FORMAT = "modelmill.manifest/1"
WEIGHTS, META, MANIFEST, SIGNATURE = "model.safetensors", "model.json", "manifest.json", "manifest.sig"
# what a model folder may hold: weights, JSON, tokenizer vocabularies, ONNX
MODEL_SUFFIXES = frozenset({".safetensors", ".json", ".txt", ".onnx"})
SAFETENSORS_DTYPES = frozenset({"BOOL", "U8", "I8", "I16", "I32", "I64", "F16", "BF16", "F32", "F64"})
# magic bytes of formats that can carry code or hide one: pickle (protocol 2-5), zip (torch.save),
# gzip, zlib, bzip2, xz
CODE_CARRIERS = {
    b"\x80\x02": "pickle",
    b"\x80\x03": "pickle",
    b"\x80\x04": "pickle",
    b"\x80\x05": "pickle",
    b"PK\x03\x04": "zip archive (torch.save)",
    b"\x1f\x8b": "gzip",
    b"\x78\x01": "zlib",
    b"\x78\x5e": "zlib",
    b"\x78\x9c": "zlib",
    b"\x78\xda": "zlib",
    b"BZh": "bzip2",
    b"\xfd7zXZ": "xz",
}


@dataclass(frozen=True)
class Limits:
    """Bounds checked before a byte of a file is parsed."""

    max_file_bytes: int = 2 * 1024**3
    max_total_bytes: int = 4 * 1024**3
    max_files: int = 256
    max_json_bytes: int = 16 * 1024**2
    max_header_bytes: int = 16 * 1024**2


@dataclass(frozen=True)
class Manifest:
    """relative POSIX path -> (sha256 hex, size in bytes) of every file of a folder."""

    files: dict[str, tuple[str, int]]

    def to_json(self) -> str:
        """Canonical JSON (sorted, compact): the bytes a signature covers."""
        body = {"format": MANIFEST_FORMAT, "files": {k: list(v) for k, v in sorted(self.files.items())}}
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str | None, source: str) -> Manifest:
        if not text:
            raise UnsafeModelError(f"{source}: no manifest recorded")
        try:
            raw = json.loads(text)
            assert raw["format"] == MANIFEST_FORMAT and isinstance(raw["files"], dict)
            files = {str(k): (str(v[0]), int(v[1])) for k, v in raw["files"].items()}
        except (ValueError, KeyError, TypeError, IndexError, AssertionError):
            raise UnsafeModelError(f"{source}: the manifest is not a {MANIFEST_FORMAT} document") from None
        for name, (sha, _) in files.items():
            check_relative(name, source)
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                raise UnsafeModelError(f"{source}: {name}: manifest sha256 is malformed")
        return cls(files)


@dataclass
class LoadedModel:
    module: nn.Module
    meta: dict[str, Any]
    folder: Path
    manifest: Manifest = field(repr=False, default_factory=lambda: Manifest({}))

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes") or [])


def check_relative(name: str, source: str) -> None:
    """Refuse absolute, parent-escaping, backslashed or empty artifact names."""
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or path.is_absolute()
        or any(p in ("..", ".", "") for p in name.split("/"))
    ):
        raise UnsafeModelError(f"{source}: {name!r}: artifact path escapes the model folder")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_files(root: Path, source: str, limits: Limits = Limits()) -> dict[str, Path]:
    """Every regular file under root by relative POSIX path; a symlink or odd entry is refused."""
    found: dict[str, Path] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = Path(entry.path).relative_to(root).as_posix()
                if entry.is_symlink():
                    raise UnsafeModelError(f"{source}: {rel}: is a symbolic link")
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    found[rel] = Path(entry.path)
                else:
                    raise UnsafeModelError(f"{source}: {rel}: not a regular file")
                if len(found) > limits.max_files:
                    raise UnsafeModelError(f"{source}: more than {limits.max_files} files")
    return found


def manifest_of(root: str | Path, ignore: tuple[str, ...] = (MANIFEST, SIGNATURE)) -> Manifest:
    files = list_files(Path(root), str(root))
    return Manifest({k: (sha256_of(p), p.stat().st_size) for k, p in files.items() if k not in ignore})


def verify_tree(
    root: str | Path,
    manifest: Manifest,
    source: str,
    limits: Limits = Limits(),
    suffixes: frozenset[str] = MODEL_SUFFIXES,
    ignore: tuple[str, ...] = (MANIFEST, SIGNATURE),
) -> None:
    """The folder holds exactly the manifest's files, each of the recorded size and sha256, each of
    an allowed type, none a pickle/archive; sizes are bounded before any file is hashed."""
    root = Path(root)
    for name in manifest.files:
        check_relative(name, source)
    files = {k: p for k, p in list_files(root, source, limits).items() if k not in ignore}
    if missing := sorted(set(manifest.files) - set(files)):
        raise UnsafeModelError(f"{source}: {missing[0]}: in the manifest but missing")
    if extra := sorted(set(files) - set(manifest.files)):
        raise UnsafeModelError(f"{source}: {extra[0]}: not in the manifest")
    total = 0
    for name, path in sorted(files.items()):
        size = path.stat().st_size
        total += size
        if size > limits.max_file_bytes or total > limits.max_total_bytes:
            raise UnsafeModelError(f"{source}: {name}: oversize ({size} bytes)")
        if size != manifest.files[name][1]:
            raise UnsafeModelError(f"{source}: {name}: size does not match the manifest")
    for name, path in sorted(files.items()):
        if sha256_of(path) != manifest.files[name][0]:
            raise UnsafeModelError(f"{source}: {name}: sha256 does not match the manifest")
        check_content(path, name, source, limits, suffixes)


def check_content(path: Path, name: str, source: str, limits: Limits, suffixes: frozenset[str]) -> None:
    """An allowed file type whose bytes are what the name says (never pickle/zip/compressed)."""
    suffix = PurePosixPath(name).suffix if "." in PurePosixPath(name).name else ""
    if suffix not in suffixes:
        raise UnsafeModelError(f"{source}: {name}: file type '{suffix or name}' is not allowed")
    with open(path, "rb") as handle:
        head = handle.read(8)
    for magic, what in CODE_CARRIERS.items():
        if head.startswith(magic):
            raise UnsafeModelError(f"{source}: {name}: is a {what}, not {suffix or 'text'}")
    if suffix == ".safetensors":
        check_safetensors_header(path, name, source, limits)
    elif suffix == ".json":
        if path.stat().st_size > limits.max_json_bytes:
            raise UnsafeModelError(f"{source}: {name}: JSON file is oversize")
        try:
            json.loads(path.read_bytes())
        except ValueError:
            raise UnsafeModelError(f"{source}: {name}: not valid JSON") from None


def check_safetensors_header(path: Path, name: str, source: str, limits: Limits) -> dict[str, Any]:
    with open(path, "rb") as handle:
        return parse_safetensors_header(handle, path.stat().st_size, f"{source}: {name}", limits)


def parse_safetensors_header(handle: BinaryIO, size: int, where: str, limits: Limits) -> dict[str, Any]:
    """Parse a safetensors header ourselves: bounded length, JSON, allowed dtypes, offsets that
    tile the data area exactly and match each tensor's shape."""
    raw = handle.read(8)
    (length,) = struct.unpack("<Q", raw) if len(raw) == 8 else (-1,)
    if length < 2 or length > min(limits.max_header_bytes, size - 8):
        raise UnsafeModelError(f"{where}: bad safetensors header length")
    try:
        header = json.loads(handle.read(length))
    except ValueError:
        raise UnsafeModelError(f"{where}: safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise UnsafeModelError(f"{where}: safetensors header is not a mapping")
    spans, data = [], size - 8 - length
    for key, info in header.items():
        if key != "__metadata__":
            spans.append(_tensor_span(key, info, data, where))
    position = 0
    for start, end in sorted(spans):
        if start != position:
            raise UnsafeModelError(f"{where}: safetensors tensors overlap or leave gaps")
        position = end
    if position != data:
        raise UnsafeModelError(f"{where}: safetensors data area has trailing bytes")
    return header


def _tensor_span(key: str, info: Any, data: int, where: str) -> tuple[int, int]:
    try:
        dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
        width = torch.empty(0, dtype=_TORCH_DTYPES[dtype]).element_size()
        count = 1
        for dim in shape:
            assert isinstance(dim, int) and dim >= 0
            count *= dim
        assert isinstance(start, int) and isinstance(end, int)
        assert 0 <= start <= end <= data and end - start == count * width
    except (KeyError, TypeError, ValueError, AssertionError):
        raise UnsafeModelError(f"{where}: tensor {key!r}: bad safetensors header entry") from None
    return start, end


_TORCH_DTYPES = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
}


# --- writing ------------------------------------------------------------------------------


def write(
    folder: str | Path,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    extra_files: dict[str, bytes] | None = None,
) -> Manifest:
    """Write weights + model.json + extra files into a fresh folder (built beside it, then renamed
    into place) with its manifest.json; returns the manifest."""
    folder = Path(folder)
    if folder.exists():
        raise UnsafeModelError(f"{folder}: already exists (a model folder is written once)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        payload = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        (staging / WEIGHTS).write_bytes(dump_safetensors(payload))
        (staging / META).write_text(json.dumps({"format": FORMAT, **meta}, indent=2, sort_keys=True))
        for name, data in (extra_files or {}).items():
            check_relative(name, str(folder))
            if name in (WEIGHTS, META, MANIFEST, SIGNATURE):
                raise UnsafeModelError(f"{folder}: {name}: reserved file name")
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        manifest = manifest_of(staging)
        (staging / MANIFEST).write_text(manifest.to_json())
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def save(
    folder: str | Path,
    model: nn.Module,
    *,
    classes: list[str],
    input_example: torch.Tensor,
    kind: str = "image",
    preprocessing: dict[str, Any] | None = None,
    extra_files: dict[str, bytes] | None = None,
    schema: dict[str, Any] | None = None,
) -> Manifest:
    """A float modelmill model as a model folder: its spec, classes, kind, preprocessing state,
    dataset schema (JSON: what raw inputs are parsed against) and the input's shape/dtype."""
    meta = {
        "spec": spec_of(model),
        "kind": kind,
        "classes": [str(c) for c in classes],
        "preprocessing": preprocessing,
        "input": {"shape": [-1, *input_example.shape[1:]], "dtype": str(input_example.dtype).split(".")[-1]},
        "output": "logits",
        "recipe": None,
    }
    if schema is not None:
        meta["schema"] = schema
    return write(folder, model.state_dict(), meta, extra_files)


# --- loading ------------------------------------------------------------------------------


def read_meta(folder: Path, source: str) -> dict[str, Any]:
    meta = json.loads((folder / META).read_text())
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("spec"), dict):
        raise UnsafeModelError(f"{source}: {META}: not a {FORMAT} document")
    return meta


def load(
    folder: str | Path, manifest: Manifest | None = None, source: str | None = None, limits: Limits = Limits()
) -> LoadedModel:
    """Verify the folder against `manifest` (default: its own manifest.json, an integrity check
    only: the registry's copy is the trusted one), then build the module from JSON + safetensors."""
    folder = Path(folder)
    source = source or str(folder)
    if manifest is None:
        path = folder / MANIFEST
        if path.is_symlink() or not path.is_file() or path.stat().st_size > limits.max_json_bytes:
            raise UnsafeModelError(f"{source}: {MANIFEST}: missing or not a regular file")
        manifest = Manifest.from_json(path.read_text(), source)
    verify_tree(folder, manifest, source, limits)
    for required in (META, WEIGHTS):
        if required not in manifest.files:
            raise UnsafeModelError(f"{source}: {required}: missing from the model folder")
    meta = read_meta(folder, source)
    tensors = load_safetensors((folder / WEIGHTS).read_bytes())
    if meta.get("recipe"):
        from modelmill.compression.storage import rebuild

        module = rebuild(meta, tensors, source)
    else:
        module = build_module(meta["spec"], tensors, source)
    return LoadedModel(module.eval(), meta, folder, manifest)


def build_module(spec: Spec, tensors: dict[str, torch.Tensor], source: str) -> nn.Module:
    """The spec's module, built on the meta device (no memory for a spec that claims a huge model),
    its state checked name by name against the stored tensors, then the tensors assigned."""
    try:
        with torch.device("meta"):
            module = build_from_spec(spec)
    except (ValueError, TypeError, KeyError) as exc:
        raise UnsafeModelError(f"{source}: {META}: spec cannot be built ({exc})") from None
    expected = module.state_dict()
    if set(expected) != set(tensors):
        odd = sorted(set(expected) ^ set(tensors))[0]
        raise UnsafeModelError(f"{source}: {WEIGHTS}: tensor {odd!r} does not match the spec")
    for key, value in expected.items():
        if value.shape != tensors[key].shape or value.dtype != tensors[key].dtype:
            raise UnsafeModelError(f"{source}: {WEIGHTS}: tensor {key!r} has the wrong shape or dtype")
    module.load_state_dict(tensors, strict=True, assign=True)
    if any(t.is_meta for t in [*module.parameters(), *module.buffers()]):
        raise UnsafeModelError(f"{source}: {WEIGHTS}: the spec's module keeps unstored tensors")
    return module
