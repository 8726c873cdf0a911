"""Ed25519 signatures of model manifests (the canonical manifest JSON), with `cryptography`."""

from __future__ import annotations

import base64

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from modelmill.errors import ConfigError, UnsafeModelError


def generate_keypair() -> tuple[bytes, bytes]:
    """(private key PEM, public key PEM) for a team: keep the private one with whoever registers."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def sign(private_pem: bytes, payload: bytes, source: str = "signing key") -> str:
    try:
        key = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{source}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{source}: not an Ed25519 key")
    return base64.b64encode(key.sign(payload)).decode()


def verify(public_pem: bytes, payload: bytes, signature: str | None, where: str) -> None:
    """Raise UnsafeModelError unless `signature` is a valid signature of payload by the key."""
    try:
        key = serialization.load_pem_public_key(public_pem)
    except ValueError:
        raise ConfigError("manifest verify key: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("manifest verify key: not an Ed25519 key")
    if not signature:
        raise UnsafeModelError(f"{where}: the manifest is not signed (a verify key is configured)")
    try:
        key.verify(base64.b64decode(signature, validate=True), payload)
    except (InvalidSignature, ValueError):
        raise UnsafeModelError(f"{where}: the manifest signature is not valid for the verify key") from None
