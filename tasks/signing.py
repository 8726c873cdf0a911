"""Which keys sign and verify model manifests: paths in $MODELMILL_SIGNING_KEY (Ed25519 private
key PEM, where versions are registered) and $MODELMILL_VERIFY_KEY (public key PEM: once set,
every modelmill load requires a valid signature)."""

from __future__ import annotations

import os
from pathlib import Path

from modelmill import signing
from modelmill.errors import ConfigError

SIGNING_KEY_ENV, VERIFY_KEY_ENV = "MODELMILL_SIGNING_KEY", "MODELMILL_VERIFY_KEY"


def _read(env: str) -> bytes | None:
    path = os.environ.get(env)
    if not path:
        return None
    if not Path(path).is_file():
        raise ConfigError(f"${env}: {path}: no such key file")
    return Path(path).read_bytes()


def sign(payload: bytes) -> str | None:
    """The signature of payload, or None when no signing key is configured."""
    key = _read(SIGNING_KEY_ENV)
    return signing.sign(key, payload, f"${SIGNING_KEY_ENV}") if key else None


def verify(payload: bytes, signature: str | None, where: str) -> None:
    """Nothing to do without a verify key; with one, a missing or wrong signature is refused."""
    key = _read(VERIFY_KEY_ENV)
    if key is not None:
        signing.verify(key, payload, signature, where)
