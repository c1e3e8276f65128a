"""reconcile/storage.py: a policy's Secrets checked, and its S3 client verifying with its CA."""

from __future__ import annotations

import base64
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest

from stackforge_operator import kube
from stackforge_operator.models.backup import ObjectStorage
from stackforge_operator.reconcile import storage

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
NAMESPACE = "tenant-acme"


def _secret(data: Mapping[str, str]) -> dict[str, Any]:
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """Secrets of NAMESPACE by name, as kube.get returns them."""
    found: dict[str, dict[str, Any]] = {}

    def get(api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        assert (api_version, kind, namespace) == ("v1", "Secret", NAMESPACE)
        return found.get(name)

    monkeypatch.setattr(kube, "get", get)
    return found


def _storage(**changes: Any) -> ObjectStorage:
    return ObjectStorage.model_validate({
        "bucket": "backups", "endpoint": "https://10.1.2.3:9000", "forcePathStyle": True,
        "credentialsSecretRef": {"name": "acme-s3"}, "endpointCA": {"name": "s3-ca"},
        **changes})


def _reasons(problems: list[Any]) -> list[tuple[str, str]]:
    return [(p.reason, p.message) for p in problems]


KEYS = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "very-secret"}


def test_all_present(secrets: dict[str, dict[str, Any]]) -> None:
    secrets.update({"acme-s3": _secret(KEYS), "s3-ca": _secret({"ca.crt": PEM})})
    assert storage.storage_problems(_storage(), NAMESPACE) == []
    assert storage.ca_bundle(_storage(), NAMESPACE) == PEM


def test_missing_ca_secret_is_missing_secret(secrets: dict[str, dict[str, Any]]) -> None:
    secrets["acme-s3"] = _secret(KEYS)
    assert _reasons(storage.storage_problems(_storage(), NAMESPACE)) == [(
        "MissingSecret", "spec.storage.endpointCA: Secret tenant-acme/s3-ca does not exist")]


def test_missing_ca_key_is_missing_secret_key(secrets: dict[str, dict[str, Any]]) -> None:
    secrets.update({"acme-s3": _secret(KEYS), "ca": _secret({"ca.crt": PEM})})
    ref = {"name": "ca", "key": "bundle.pem"}
    assert _reasons(storage.storage_problems(_storage(endpointCA=ref), NAMESPACE)) == [(
        "MissingSecretKey", "spec.storage.endpointCA: Secret tenant-acme/ca lacks bundle.pem")]


def test_credentials_and_ca_are_both_reported(secrets: dict[str, dict[str, Any]]) -> None:
    assert [r for r, _ in _reasons(storage.storage_problems(_storage(), NAMESPACE))] == [
        "MissingSecret", "MissingSecret"]


@pytest.mark.parametrize("content", ["not a certificate", "\udcff"])
def test_a_ca_key_without_pem_is_invalid(secrets: dict[str, dict[str, Any]],
                                         content: str) -> None:
    raw = content.encode("utf-8", "surrogateescape")
    secrets.update({"acme-s3": _secret(KEYS),
                    "s3-ca": {"data": {"ca.crt": base64.b64encode(raw).decode()}}})
    [(reason, message)] = _reasons(storage.storage_problems(_storage(), NAMESPACE))
    assert reason == "InvalidEndpointCA"
    assert "spec.storage.endpointCA" in message and "tenant-acme/s3-ca" in message
    assert content not in message  # the key's content never reaches status


def test_without_endpoint_ca_nothing_is_read_for_it(secrets: dict[str, dict[str, Any]]) -> None:
    plain = ObjectStorage.model_validate({"bucket": "backups"})
    assert storage.storage_secrets(plain) == []
    assert storage.storage_problems(plain, NAMESPACE) == []
    assert storage.ca_bundle(plain, NAMESPACE) is None


def test_private_file_is_owner_only_and_removed_after() -> None:
    with storage.private_file(PEM) as path:
        assert path.read_text() == PEM
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not path.exists() and not path.parent.exists()


def _capture_clients(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    real = boto3.session.Session.client

    def client(self: boto3.session.Session, *args: Any, **kwargs: Any) -> Any:
        verify = kwargs.get("verify")
        credentials = self.get_credentials()
        calls.append({**kwargs, "ca_text": Path(verify).read_text() if verify else None,
                      "access_key": credentials.access_key if credentials else None})
        return real(self, *args, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "client", client)
    return calls


def test_policy_store_verifies_with_the_policys_ca(secrets: dict[str, dict[str, Any]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    secrets.update({"acme-s3": _secret(KEYS), "s3-ca": _secret({"ca.crt": PEM})})
    calls = _capture_clients(monkeypatch)
    with storage.policy_store(_storage(), NAMESPACE) as store:
        [call] = calls
        path = Path(call["verify"])
        assert path.exists()  # boto3 reads it on every new connection
        assert store.bucket == "backups"
    assert call["ca_text"] == PEM
    assert call["endpoint_url"] == "https://10.1.2.3:9000"
    assert call["access_key"] == "id"
    assert not path.exists() and not path.parent.exists()


def test_policy_store_without_ca_keeps_botocores_default(
        secrets: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    secrets["acme-s3"] = _secret(KEYS)
    calls = _capture_clients(monkeypatch)
    with storage.policy_store(_storage(endpointCA=None), NAMESPACE):
        pass
    assert calls[0]["verify"] is None
