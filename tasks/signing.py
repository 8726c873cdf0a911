"""Optional Ed25519 signatures of model manifests (placeholder until keys are configured)."""

from __future__ import annotations


def sign(payload: bytes) -> str | None:
    return None


def verify(payload: bytes, signature: str | None, where: str) -> None:
    return None
