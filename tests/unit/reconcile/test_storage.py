"""reconcile/storage.py without a cluster: nothing read for an unset endpointCA, and the CA
bundle's private file. (The Secrets and the S3 client: tests/cluster/test_storage.py.)"""

from __future__ import annotations

import socket
import stat
from typing import Any

import pytest
from kubernetes.config import ConfigException

from stackforge_operator.models.backup import ObjectStorage
from stackforge_operator.reconcile import storage

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.mark.usefixtures("no_cluster")
def test_without_endpoint_ca_nothing_is_read_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKFORGE_AMBIENT_S3_IDENTITY", "allow")
    plain = ObjectStorage.model_validate({"bucket": "backups"})
    assert storage.storage_secrets(plain) == []
    assert storage.storage_problems(plain, "tenant-acme") == []
    assert storage.ca_bundle(plain, "tenant-acme") is None
    # Had anything been read, it would have failed like this:
    with pytest.raises(ConfigException):
        storage.ca_bundle(ObjectStorage.model_validate(
            {"bucket": "backups", "endpointCA": {"name": "s3-ca"}}), "tenant-acme")


def test_storage_without_keys_is_refused_unless_the_operator_lends_its_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without keys, boto3's default chain took the operator's own identity for
    any bucket and prefix a tenant's policy named (and the runners the node's)."""
    keyless = ObjectStorage.model_validate({"bucket": "backups"})
    monkeypatch.delenv("STACKFORGE_AMBIENT_S3_IDENTITY", raising=False)
    [problem] = storage.storage_problems(keyless, "tenant-acme")
    assert problem.reason == "CredentialsRequired"
    assert "STACKFORGE_AMBIENT_S3_IDENTITY=allow" in problem.message
    # The last guard: no client is made (nothing read from the API either).
    with pytest.raises(storage.AmbientIdentityRefusedError, match="credentialsSecretRef"), \
            storage.policy_store(keyless, "tenant-acme"):
        pass
    monkeypatch.setenv("STACKFORGE_AMBIENT_S3_IDENTITY", "allow")
    assert storage.storage_problems(keyless, "tenant-acme") == []
    with storage.policy_store(keyless, "tenant-acme") as store:
        assert store.bucket == "backups"


def test_private_file_is_owner_only_and_removed_after() -> None:
    with storage.private_file(PEM) as path:
        assert path.read_text() == PEM
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not path.exists() and not path.parent.exists()


def test_endpoint_addresses_for_the_drill_sandboxs_policy() -> None:
    assert storage.endpoint_addresses(None) == []
    assert storage.endpoint_addresses("https://10.244.0.1:9443/") == [("10.244.0.1", 9443)]
    assert storage.endpoint_addresses("http://[fd00::5]/") == [("fd00::5", 80)]
    assert storage.endpoint_addresses("https://127.0.0.1") == [("127.0.0.1", 443)]
    # A name is resolved (here by /etc/hosts); one that does not resolve gives nothing.
    assert ("127.0.0.1", 9000) in storage.endpoint_addresses("http://localhost:9000")
    assert storage.endpoint_addresses("https://no-such-host.invalid:9000") == []


def test_a_name_is_looked_up_once_a_minute_and_a_failed_lookup_keeps_the_last_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    answers: list[list[str] | None] = [["10.9.0.1"], None, ["10.9.0.2"]]

    def lookup(host: str, port: int, type: int) -> list[tuple[Any, ...]]:
        calls.append(host)
        answer = answers.pop(0)
        if answer is None:
            raise socket.gaierror("temporary failure in name resolution")
        return [(socket.AF_INET, type, 6, "", (ip, port)) for ip in answer]

    clock = [1000.0]
    monkeypatch.setattr(storage, "_resolved", {})

    def resolve() -> list[tuple[str, int]]:
        return storage.resolve("s3.internal.example", 9000, lookup=lookup,
                               clock=lambda: clock[0])

    assert resolve() == [("10.9.0.1", 9000)]
    clock[0] += 30
    assert resolve() == [("10.9.0.1", 9000)]
    assert len(calls) == 1  # within the minute: no lookup
    clock[0] += 31
    assert resolve() == [("10.9.0.1", 9000)]  # the lookup failed: the last answer
    assert resolve() == [("10.9.0.2", 9000)]  # answered again
    assert len(calls) == 3


SERVICE = {"spec": {"ports": [{"name": "https", "port": 443, "targetPort": 9443},
                              {"name": "metrics", "port": 9000}]}}


def _slice(port_name: str, port: int, *addresses: str) -> dict[str, Any]:
    return {"ports": [{"name": port_name, "port": port}],
            "endpoints": [{"addresses": [a]} for a in addresses]}


def test_a_services_backends_are_its_endpoints_on_the_matching_port() -> None:
    slices = [_slice("https", 9443, "192.168.1.5", "192.168.1.6"),
              _slice("metrics", 9100, "192.168.1.5"),
              _slice("https", 9443, "192.168.1.5")]
    assert storage.backends(SERVICE, slices, 443) == [("192.168.1.5", 9443),
                                                      ("192.168.1.6", 9443)]
    # A port the Service does not have, or no Service at all: nothing.
    assert storage.backends(SERVICE, slices, 8443) == []
    assert storage.backends(None, slices, 443) == []


@pytest.mark.parametrize("host", ["s3.storage.svc", "s3.storage.svc.cluster.local",
                                  "s3.storage.svc."])
def test_only_service_names_are_looked_up(host: str) -> None:
    assert storage._SERVICE_HOST.match(host) is not None


@pytest.mark.parametrize("host", ["s3.amazonaws.com", "minio", "s3.storage", "a.b.svc.example"])
def test_other_names_are_not_services(host: str) -> None:
    assert storage.service_backends(host, 443) == []
