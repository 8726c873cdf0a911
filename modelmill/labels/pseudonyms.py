"""Annotator pseudonyms: a keyed HMAC of the Label Studio identity (id or email), so the ledger,
reports and logs never hold an email while one annotator stays one identity for the consensus."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from modelmill.errors import ConfigError

KEY_ENV = "MODELMILL_ANNOTATOR_KEY"  # hex; overrides the key file (CI, several machines)
KEY_BYTES = 32
PREFIX = "ann-"

Pseudonym = Callable[[str], str]
EMAIL = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def load_key(path: str | Path) -> bytes:
    """The project's key: $MODELMILL_ANNOTATOR_KEY, else the key file, created (0600) on first use.
    Keep it out of git; share it with whoever imports labels for the same data."""
    if os.environ.get(KEY_ENV):
        try:
            key = bytes.fromhex(os.environ[KEY_ENV])
        except ValueError:
            raise ConfigError(f"{KEY_ENV}: not a hex string") from None
    else:
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(KEY_BYTES))
            os.replace(tmp, path)
        try:
            key = bytes.fromhex(path.read_text().strip())
        except ValueError:
            raise ConfigError(f"{path}: the annotator key is not a hex string") from None
    if len(key) < 16:
        raise ConfigError(f"annotator key: at least 16 bytes needed, got {len(key)}")
    return key


def pseudonymizer(key: bytes) -> Pseudonym:
    """identity -> `ann-<16 hex>`; case and surrounding blanks of an email do not matter."""

    def pseudonym(identity: str) -> str:
        if not identity or identity.startswith(PREFIX):
            return identity
        digest = hmac.new(key, identity.strip().lower().encode(), hashlib.sha256).hexdigest()
        return PREFIX + digest[:16]

    return pseudonym


def scrubbed(source: BinaryIO, pseudonym: Pseudonym, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of an export with every email replaced by its pseudonym (the archived copy);
    chunks are cut after a quote, comma or newline, which no email contains."""
    carry = b""
    while block := source.read(chunk):
        data = carry + block
        cut = max(data.rfind(b'"'), data.rfind(b","), data.rfind(b"\n")) + 1
        if cut == 0 and len(data) < 16 * chunk:
            carry = data
            continue
        cut = cut or len(data)
        carry = data[cut:]
        yield _replace(data[:cut], pseudonym)
    yield _replace(carry, pseudonym)


def _replace(data: bytes, pseudonym: Pseudonym) -> bytes:
    return EMAIL.sub(lambda m: pseudonym(m.group().decode()).encode(), data)
