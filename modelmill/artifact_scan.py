"""Find pickles in a folder of artifacts: raw pickle streams (any protocol), torch.save zips, and
either of them gzip/zlib-wrapped; used to show that nothing modelmill writes carries code."""

from __future__ import annotations

import gzip
import io
import os
import pickletools
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

MAX_SCANNED_BYTES = 256 * 1024**2  # larger files are reported, not read


@dataclass(frozen=True)
class Finding:
    path: str
    what: str


CODE_OPS = {"GLOBAL", "STACK_GLOBAL", "INST"}  # how a pickle names a callable to import


def is_pickle(data: bytes) -> bool:
    """A pickle: protocol 2-5 by its header; protocol 0/1 (text-like) only when the whole stream
    parses to STOP and imports a callable, so prose ending in a period is not flagged."""
    if not data or data[-1:] != b".":
        return False
    if data[:1] == b"\x80":
        return len(data) > 2 and 2 <= data[1] <= 5
    try:
        ops = list(pickletools.genops(io.BytesIO(data)))
    except Exception:  # noqa: BLE001 - any malformed stream is simply not a pickle
        return False
    names = {op.name for op, _, _ in ops}
    return ops[-1][0].name == "STOP" and ops[-1][2] == len(data) - 1 and bool(names & CODE_OPS)


def classify(data: bytes) -> str | None:
    """What code carrier `data` is, or None."""
    if is_pickle(data):
        return "pickle"
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = archive.namelist()
                if any(n.endswith((".pkl", "data.pkl")) for n in names):
                    return "torch pickle zip"
                for name in names:
                    if is_pickle(archive.read(name)):
                        return f"zip member {name} is a pickle"
        except (zipfile.BadZipFile, OSError):
            return None
    inner = _inflated(data)
    if inner is not None and (found := classify(inner)):
        return f"compressed {found}"
    return None


def _inflated(data: bytes) -> bytes | None:
    try:
        if data.startswith(b"\x1f\x8b"):
            return gzip.GzipFile(fileobj=io.BytesIO(data)).read(MAX_SCANNED_BYTES)
        if data[:1] == b"\x78":
            return zlib.decompressobj().decompress(data, MAX_SCANNED_BYTES)
    except (OSError, EOFError, zlib.error):
        return None
    return None


def scan(root: str | Path) -> list[Finding]:
    """Every file under root (links not followed) that is, or wraps, a pickle or a torch zip."""
    findings = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if path.is_symlink():
                continue
            if path.stat().st_size > MAX_SCANNED_BYTES:
                findings.append(Finding(str(path), "too large to scan"))
                continue
            what = classify(path.read_bytes())
            if what:
                findings.append(Finding(str(path), what))
    return findings
