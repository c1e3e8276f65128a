"""reconcile/storage.py against real servers: a policy's Secrets read from the API server,
and its S3 client reaching an HTTPS endpoint of a private CA with the policy's keys and CA.

kube.py runs in this process as the operator's ServiceAccount (so the shipped RBAC must
allow every read); the S3 server is moto's, over HTTPS with a certificate of its own CA
and IAM authentication enforced.
"""

from __future__ import annotations

import base64
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, PartialCredentialsError, SSLError

from stackforge_operator.devcluster.pki import create_server_tls
from stackforge_operator.models.backup import ObjectStorage
from stackforge_operator.reconcile import storage
from stackforge_operator.status import Problem
from tests.support.clusters import ClusterHandle
from tests.support.fixtures_backup import running_s3_server
from tests.support.s3_server import S3Server
from tests.support.secrets import FAKE_CA_PEM, S3_KEYS, put_secret

pytestmark = pytest.mark.usefixtures("kube_as_operator")

def _storage(**changes: Any) -> ObjectStorage:
    return ObjectStorage.model_validate({
        "bucket": "backups", "endpoint": "https://10.1.2.3:9000", "forcePathStyle": True,
        "credentialsSecretRef": {"name": "acme-s3"}, "endpointCA": {"name": "s3-ca"},
        **changes})


def _reasons(problems: list[Problem]) -> list[tuple[str, str]]:
    return [(p.reason, p.message) for p in problems]


# ----------------------------------------------------------------- the Secrets, as checked


def test_all_present(cluster: ClusterHandle, namespace: str) -> None:
    put_secret(cluster, namespace, "acme-s3", S3_KEYS)
    put_secret(cluster, namespace, "s3-ca", {"ca.crt": FAKE_CA_PEM})
    assert storage.storage_problems(_storage(), namespace) == []
    assert storage.ca_bundle(_storage(), namespace) == FAKE_CA_PEM


def test_missing_ca_secret_is_missing_secret(cluster: ClusterHandle, namespace: str) -> None:
    put_secret(cluster, namespace, "acme-s3", S3_KEYS)
    assert _reasons(storage.storage_problems(_storage(), namespace)) == [(
        "MissingSecret", f"spec.storage.endpointCA: Secret {namespace}/s3-ca does not exist")]
    assert storage.ca_bundle(_storage(), namespace) is None


def test_missing_ca_key_is_missing_secret_key(cluster: ClusterHandle, namespace: str) -> None:
    put_secret(cluster, namespace, "acme-s3", S3_KEYS)
    put_secret(cluster, namespace, "ca", {"ca.crt": FAKE_CA_PEM})
    ref = {"name": "ca", "key": "bundle.pem"}
    assert _reasons(storage.storage_problems(_storage(endpointCA=ref), namespace)) == [(
        "MissingSecretKey", f"spec.storage.endpointCA: Secret {namespace}/ca lacks bundle.pem")]
    assert storage.ca_bundle(_storage(endpointCA=ref), namespace) is None


def test_missing_credentials_key_is_missing_secret_key(
        cluster: ClusterHandle, namespace: str) -> None:
    put_secret(cluster, namespace, "acme-s3", {"AWS_ACCESS_KEY_ID": "id"})
    put_secret(cluster, namespace, "s3-ca", {"ca.crt": FAKE_CA_PEM})
    assert _reasons(storage.storage_problems(_storage(), namespace)) == [(
        "MissingSecretKey", f"spec.storage.credentialsSecretRef: Secret {namespace}/acme-s3 "
        "lacks AWS_SECRET_ACCESS_KEY")]


def test_a_credentials_key_without_text_is_empty_and_never_the_operators_identity(
        cluster: ClusterHandle, namespace: str) -> None:
    """An S3 client given no keys takes boto3's default chain: the operator's own
    identity, against a bucket the policy names (listing, and retention's deletes)."""
    put_secret(cluster, namespace, "acme-s3", {"AWS_ACCESS_KEY_ID": "  ",
                                               "AWS_SECRET_ACCESS_KEY": b"\xff\xfe"})
    put_secret(cluster, namespace, "s3-ca", {"ca.crt": FAKE_CA_PEM})
    assert _reasons(storage.storage_problems(_storage(), namespace)) == [(
        "EmptySecretKey", f"spec.storage.credentialsSecretRef: Secret {namespace}/acme-s3 "
        "holds no text in AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY")]
    with pytest.raises(PartialCredentialsError, match=f"Secret {namespace}/acme-s3"), \
            storage.policy_store(_storage(), namespace):
        pass


def test_credentials_and_ca_are_both_reported(namespace: str) -> None:
    assert _reasons(storage.storage_problems(_storage(), namespace)) == [
        ("MissingSecret",
         f"spec.storage.credentialsSecretRef: Secret {namespace}/acme-s3 does not exist"),
        ("MissingSecret", f"spec.storage.endpointCA: Secret {namespace}/s3-ca does not exist"),
    ]


@pytest.mark.parametrize("content", [b"not a certificate", b"\xff"],
                         ids=["text-without-pem", "not-text"])
def test_a_ca_key_without_pem_is_invalid(cluster: ClusterHandle, namespace: str,
                                         content: bytes) -> None:
    put_secret(cluster, namespace, "acme-s3", S3_KEYS)
    put_secret(cluster, namespace, "s3-ca", {"ca.crt": content})
    [(reason, message)] = _reasons(storage.storage_problems(_storage(), namespace))
    assert reason == "InvalidEndpointCA"
    assert "spec.storage.endpointCA" in message and f"{namespace}/s3-ca" in message
    # The key's content never reaches status (in any spelling of it).
    for spelling in (content.decode("utf-8", "surrogateescape"),
                     content.decode("latin-1"), base64.b64encode(content).decode()):
        assert spelling not in message


# ------------------------------------------------------------ the S3 client, against HTTPS


@pytest.fixture(scope="module")
def tls_s3() -> Iterator[S3Server]:
    """moto's S3 server over HTTPS, its certificate signed by a CA of its own."""
    with running_s3_server(tls=True) as server:
        yield server


@pytest.fixture
def ca_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Where storage.private_file puts the CA bundle: this test's own directory (tempfile's
    documented default directory), so the test sees exactly the files it made."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def _ca_dirs(directory: Path) -> list[Path]:
    """The directories storage.private_file made (the kubernetes client caches its API
    discovery beside them)."""
    return sorted(directory.glob("stackforge-ca-*"))


def _ca_pem(server: S3Server) -> str:
    assert server.ca_bundle is not None
    return server.ca_bundle.read_text()


def _s3_storage(server: S3Server, bucket: str, **changes: Any) -> ObjectStorage:
    return _storage(bucket=bucket, endpoint=server.endpoint, **changes)


def _keys(server: S3Server, *, read_only: bool = False) -> dict[str, str]:
    return (server.read_only_credentials if read_only else server.credentials).env()


def test_policy_store_reaches_the_bucket_over_https_with_the_policys_ca(
        cluster: ClusterHandle, namespace: str, tls_s3: S3Server, ca_files: Path) -> None:
    put_secret(cluster, namespace, "acme-s3", _keys(tls_s3))
    put_secret(cluster, namespace, "s3-ca", {"ca.crt": _ca_pem(tls_s3)})
    bucket = tls_s3.create_bucket()
    with storage.policy_store(_s3_storage(tls_s3, bucket), namespace) as store:
        # boto3 reads the bundle on every new connection: it exists while the store is used,
        # holds the Secret's CA, and only this user can read it.
        [ca_file] = ca_files.glob("stackforge-ca-*/ca.crt")
        assert ca_file.read_text() == _ca_pem(tls_s3)
        assert stat.S_IMODE(ca_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(ca_file.parent.stat().st_mode) == 0o700
        assert store.bucket == bucket
        store.put_bytes("stackforge/acme/probe.json", b'{"probe": 1}')
        listed = [o["Key"] for o in store.client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == ["stackforge/acme/probe.json"]
    assert not ca_file.exists() and not ca_file.parent.exists()
    assert _ca_dirs(ca_files) == []
    # Really written, as another client of the server reads it back.
    written = tls_s3.client().get_object(Bucket=bucket, Key="stackforge/acme/probe.json")
    assert written["Body"].read() == b'{"probe": 1}'


def test_policy_store_signs_with_the_keys_of_the_credentials_secret(
        cluster: ClusterHandle, namespace: str, tls_s3: S3Server, ca_files: Path) -> None:
    # The server's read-only user: reading works, writing is refused. Only the Secret's
    # keys make that difference (no AWS_* keys are in this process's environment).
    put_secret(cluster, namespace, "acme-s3", _keys(tls_s3, read_only=True))
    put_secret(cluster, namespace, "s3-ca", {"ca.crt": _ca_pem(tls_s3)})
    bucket = tls_s3.create_bucket()
    tls_s3.client().put_object(Bucket=bucket, Key="stackforge/acme/old.json", Body=b"{}")
    with storage.policy_store(_s3_storage(tls_s3, bucket), namespace) as store:
        assert store.get_bytes("stackforge/acme/old.json") == b"{}"
        with pytest.raises(ClientError) as refused:
            store.put_bytes("stackforge/acme/new.json", b"{}")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert _ca_dirs(ca_files) == []


def test_policy_store_without_endpoint_ca_keeps_botocores_default_trust(
        cluster: ClusterHandle, namespace: str, tls_s3: S3Server, ca_files: Path) -> None:
    # The same endpoint, keys and bucket, but no endpointCA: botocore verifies with its
    # default trust (system CAs, or AWS_CA_BUNDLE), which has never heard of the server's CA.
    put_secret(cluster, namespace, "acme-s3", _keys(tls_s3))
    bucket = tls_s3.create_bucket()
    with (pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"),
          storage.policy_store(_s3_storage(tls_s3, bucket, endpointCA=None), namespace) as store):
        assert _ca_dirs(ca_files) == []  # no CA file is written
        store.client.list_objects_v2(Bucket=bucket)
    assert "Contents" not in tls_s3.client().list_objects_v2(Bucket=bucket)


def test_policy_store_with_another_ca_fails_verification(
        cluster: ClusterHandle, namespace: str, tls_s3: S3Server, ca_files: Path,
        tmp_path: Path) -> None:
    # A CA the server's certificate was not signed by: the policy's CA is really what
    # verifies the endpoint (verification is not merely turned off when a CA is given).
    other, _ = create_server_tls(tmp_path / "other", "someone-else")
    put_secret(cluster, namespace, "acme-s3", _keys(tls_s3))
    put_secret(cluster, namespace, "s3-ca", {"ca.crt": other.cert.read_text()})
    bucket = tls_s3.create_bucket()
    with (pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"),
          storage.policy_store(_s3_storage(tls_s3, bucket), namespace) as store):
        store.client.list_objects_v2(Bucket=bucket)
    assert _ca_dirs(ca_files) == []
