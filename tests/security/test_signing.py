"""Signed manifests: with a verify key configured, every load needs a valid team signature."""

import json

import pytest
import torch

import mlflow
from modelmill.errors import UnsafeModelError
from modelmill.signing import generate_keypair
from tasks.modelstore import MANIFEST_TAG, SIGNATURE_TAG, load_verified, log_model
from tasks.signing import SIGNING_KEY_ENV, VERIFY_KEY_ENV
from tasks.tracking import Tracker

NAME = "redteam-classifier"


@pytest.fixture
def keys(tmp_path, monkeypatch):
    private, public = generate_keypair()
    (tmp_path / "team.key").write_bytes(private)
    (tmp_path / "team.pub").write_bytes(public)
    monkeypatch.setenv(SIGNING_KEY_ENV, str(tmp_path / "team.key"))
    monkeypatch.setenv(VERIFY_KEY_ENV, str(tmp_path / "team.pub"))
    return tmp_path


def register_signed(registry) -> str:
    from modelmill.config import ModelConfig
    from modelmill.models import build_model

    mlflow.set_tracking_uri(registry.uri)
    mlflow.set_registry_uri(registry.uri)
    tracker = Tracker(registry.client, registry.client.create_run(registry.experiment_id).info.run_id)
    model = build_model((8, 8), 10, ModelConfig(width=4, hidden=16)).eval()
    uri, tags = log_model(tracker, model, registry.x.numpy(), [str(i) for i in range(10)], registry.root)
    assert SIGNATURE_TAG in tags
    return str(mlflow.register_model(uri, NAME, tags=tags).version)


def test_a_signed_version_loads_and_an_unsigned_one_is_refused(registry, keys):
    version = register_signed(registry)
    assert load_verified(registry.client, NAME, version).module(registry.x).shape == (4, 10)
    with pytest.raises(UnsafeModelError, match=f"v{registry.good_version}: the manifest is not signed"):
        load_verified(registry.client, NAME, registry.good_version)


def test_an_edited_manifest_or_a_stranger_signature_is_refused(registry, keys, monkeypatch):
    version = register_signed(registry)
    tags = registry.client.get_model_version(NAME, version).tags
    manifest = json.loads(tags[MANIFEST_TAG])
    path = next(iter(manifest["files"]))
    manifest["files"][path][0] = "0" * 64
    registry.client.set_model_version_tag(NAME, version, MANIFEST_TAG, json.dumps(manifest))
    with pytest.raises(UnsafeModelError, match="signature is not valid"):
        load_verified(registry.client, NAME, version)
    stranger, _ = generate_keypair()
    (keys / "stranger.key").write_bytes(stranger)
    monkeypatch.setenv(SIGNING_KEY_ENV, str(keys / "stranger.key"))
    forged = register_signed(registry)  # signed, but not by the team's key
    with pytest.raises(UnsafeModelError, match=f"v{forged}: the manifest signature is not valid"):
        load_verified(registry.client, NAME, forged)


def test_without_a_verify_key_signatures_are_optional(registry, monkeypatch):
    monkeypatch.delenv(VERIFY_KEY_ENV, raising=False)
    module = load_verified(registry.client, NAME, registry.good_version).module
    with torch.no_grad():
        assert torch.equal(module(registry.x), registry.good_logits)
