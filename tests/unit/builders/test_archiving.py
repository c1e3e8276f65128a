"""The primary's WAL archiving: server settings, pgBackRest's environment, the sidecar,
and the egress to the bucket, built from the policy that archives."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from stackforge_operator.builders import archiving, backup_network, postgres, postgres_paths, s3ca
from stackforge_operator.builders.common import COMPONENT_LABEL, TENANT_LABEL
from stackforge_operator.models.backup import (
    BackupPolicySpec,
    PhysicalBackupType,
    PhysicalRetention,
)
from stackforge_operator.models.effective import Archiving, EffectiveTenant
from stackforge_operator.reconcile.archiving_policy import archiving as chosen_archiving
from tests.unit.builders.tenants import find, tenant

CIPHER = {"name": "acme-archive", "key": "passphrase"}


def _policy_spec(storage: dict[str, Any] | None = None, **archive: Any) -> BackupPolicySpec:
    return BackupPolicySpec.model_validate({
        "tenantRef": {"name": "acme"},
        "storage": storage or {
            "bucket": "backups", "prefix": "sf", "endpoint": "https://s3.example.com:9443",
            "region": "eu-west-1", "forcePathStyle": True,
            "credentialsSecretRef": {"name": "s3-keys"}, "endpointCA": {"name": "s3-ca"}},
        "retention": {"keepLast": 3},
        "continuousArchiving": {"repositoryCipherSecretRef": CIPHER, **archive},
    })


def _archiving(spec: BackupPolicySpec) -> Archiving:
    assert spec.continuous_archiving is not None
    return Archiving(policy="nightly", storage=spec.storage,
                     archive_timeout_seconds=spec.continuous_archiving.archive_timeout_seconds,
                     cipher=spec.continuous_archiving.repository_cipher_secret_ref)


def _archived(t: EffectiveTenant, spec: BackupPolicySpec | None = None) -> EffectiveTenant:
    return replace(t, archiving=_archiving(spec or _policy_spec()))


def _containers(t: EffectiveTenant) -> dict[str, dict[str, Any]]:
    sts = find(postgres.build(t), "StatefulSet", postgres.NAME)
    return {c["name"]: c for c in sts["spec"]["template"]["spec"]["containers"]}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_without_a_policy_the_primary_archives_nothing() -> None:
    containers = _containers(tenant())
    assert archiving.ARCHIVER_CONTAINER not in containers
    assert not any("archive" in a for a in containers["postgres"]["args"])
    assert not any(e["name"].startswith("PGBACKREST_") for e in containers["postgres"]["env"])


def test_the_server_archives_through_the_wrapper_and_a_new_timeout_restarts_nothing() -> None:
    """archive_timeout was a -c argument (which outranks ALTER SYSTEM), and the
    archiver's heartbeat an env of its container: a policy's new timeout changed
    the pod template, so the primary restarted. It is the live ConfigMap's now,
    which the upkeep sets with a reload."""
    thirty, ninety = (_archived(tenant(), _policy_spec(archiveTimeoutSeconds=seconds))
                      for seconds in (30, 90))
    args = _containers(thirty)["postgres"]["args"]
    assert args[:len(postgres.SERVER_ARGS)] == postgres.SERVER_ARGS
    settings = dict(a.split("=", 1) for a in args[len(postgres.SERVER_ARGS):] if a != "-c")
    assert settings == {"archive_mode": "on",
                        "archive_command": "stackforge-pgbackrest archive-push %p"}

    def template(t: EffectiveTenant) -> Any:
        return find(postgres.build(t), "StatefulSet", postgres.NAME)["spec"]["template"]

    def live(t: EffectiveTenant) -> Any:
        return find(postgres.build(t), "ConfigMap", postgres.INIT_CONFIG)["data"]

    assert template(thirty) == template(ninety)
    assert live(thirty)[postgres.ARCHIVE_TIMEOUT_KEY] == "30"
    assert live(ninety)[postgres.ARCHIVE_TIMEOUT_KEY] == "90"
    assert live(tenant())[postgres.ARCHIVE_TIMEOUT_KEY] == ""  # reset: nothing archived
    upkeep = _env(_containers(thirty)["upkeep"])
    assert upkeep["ARCHIVE_TIMEOUT_FILE"] == (
        f"{postgres.CONFIG_DIR}/{postgres.ARCHIVE_TIMEOUT_KEY}")


def test_the_default_timeout_is_sixty_seconds() -> None:
    spec = _policy_spec()
    assert spec.continuous_archiving is not None
    assert spec.continuous_archiving.archive_timeout_seconds == 60


def test_pgbackrest_options_come_from_the_policy_and_secrets_by_reference() -> None:
    containers = _containers(_archived(tenant()))
    for name in ("postgres", archiving.ARCHIVER_CONTAINER):
        env = _env(containers[name])
        assert env["PGBACKREST_REPO1_TYPE"] == "s3"
        assert env["PGBACKREST_REPO1_S3_BUCKET"] == "backups"
        # pgBackRest takes the host and the port apart.
        assert env["PGBACKREST_REPO1_S3_ENDPOINT"] == "s3.example.com"
        assert env["PGBACKREST_REPO1_STORAGE_PORT"] == "9443"
        assert env["PGBACKREST_REPO1_S3_REGION"] == "eu-west-1"
        assert env["PGBACKREST_REPO1_S3_URI_STYLE"] == "path"
        assert env["PGBACKREST_REPO1_STORAGE_CA_FILE"] == s3ca.CA_PATH
        assert env["PGBACKREST_REPO1_CIPHER_TYPE"] == "aes-256-cbc"
        assert env["PGBACKREST_ARCHIVE_ASYNC"] == "y"
        assert env["PGBACKREST_REPO1_BUNDLE"] == "y"
        assert env["PGBACKREST_SPOOL_PATH"].startswith("/var/lib/postgresql/data/")
        assert not env["PGBACKREST_SPOOL_PATH"].startswith(postgres_paths.PGDATA)
        assert env["PGBACKREST_STANZA"] == "acme"
        assert env["STACKFORGE_REPOSITORY_BASE"] == "/sf/_pgbackrest/acme"
        # Credentials only by reference, and optional: a missing Secret fails
        # archiving, never the database's start.
        assert env["PGBACKREST_REPO1_CIPHER_PASS"] == {"secretKeyRef": {**CIPHER, "optional": True}}
        assert env["PGBACKREST_REPO1_S3_KEY"] == {"secretKeyRef": {
            "name": "s3-keys", "key": "AWS_ACCESS_KEY_ID", "optional": True}}
        assert env["PGBACKREST_REPO1_S3_KEY_SECRET"]["secretKeyRef"]["optional"] is True
        mounts = {m["mountPath"] for m in containers[name]["volumeMounts"]}
        assert s3ca.CA_DIR in mounts


def test_the_ca_volume_is_optional_too() -> None:
    sts = find(postgres.build(_archived(tenant())), "StatefulSet", postgres.NAME)
    [ca] = [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == s3ca.CA_VOLUME]
    assert ca["secret"] == {"secretName": "s3-ca", "optional": True,
                            "items": [{"key": "ca.crt", "path": "ca.crt"}]}


def test_aws_without_an_endpoint_uses_the_regional_host_and_the_pods_identity() -> None:
    spec = _policy_spec({"bucket": "backups", "region": "eu-central-1"})
    env = _env(_containers(_archived(tenant(), spec))["postgres"])
    assert env["PGBACKREST_REPO1_S3_ENDPOINT"] == "s3.eu-central-1.amazonaws.com"
    assert "PGBACKREST_REPO1_STORAGE_PORT" not in env
    assert env["PGBACKREST_REPO1_S3_KEY_TYPE"] == "auto"
    assert "PGBACKREST_REPO1_S3_KEY" not in env
    assert env["PGBACKREST_REPO1_S3_URI_STYLE"] == "host"


def test_kms_encryption_is_passed_on() -> None:
    spec = _policy_spec({"bucket": "backups", "serverSideEncryption": {
        "algorithm": "aws:kms", "kmsKeyId": "arn:aws:kms:eu-west-1:1:key/k"}})
    env = _env(_containers(_archived(tenant(), spec))["postgres"])
    assert env["PGBACKREST_REPO1_S3_KMS_KEY_ID"] == "arn:aws:kms:eu-west-1:1:key/k"


def test_the_archiver_sidecar_reads_the_data_volume_and_beats_by_the_servers_timeout(
) -> None:
    sidecar = _containers(_archived(tenant(), _policy_spec(archiveTimeoutSeconds=45)))[
        archiving.ARCHIVER_CONTAINER]
    assert sidecar["command"] == [archiving.ARCHIVER_PROGRAM]
    # Its beat follows the server's archive_timeout, read at each beat.
    assert "HEARTBEAT_SECONDS" not in _env(sidecar)
    [data] = [m for m in sidecar["volumeMounts"] if m["name"] == "data"]
    assert data == {"name": "data", "mountPath": "/var/lib/postgresql/data", "readOnly": True}
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["image"] == _containers(tenant())["postgres"]["image"]


def test_the_archiver_reads_backup_requests_from_the_pods_annotation() -> None:
    t = _archived(tenant())
    sts = find(postgres.build(t), "StatefulSet", postgres.NAME)
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes[archiving.REQUEST_VOLUME]["downwardAPI"] == {"items": [{
        "path": "request",
        "fieldRef": {"fieldPath":
                     "metadata.annotations['stackforge.io/physical-backup-request']"}}]}
    containers = _containers(t)
    sidecar = containers[archiving.ARCHIVER_CONTAINER]
    assert {"name": archiving.REQUEST_VOLUME, "mountPath": archiving.REQUEST_DIR,
            "readOnly": True} in sidecar["volumeMounts"]
    assert _env(sidecar)["REQUEST_FILE"] == f"{archiving.REQUEST_DIR}/request"
    # The server itself never sees requests.
    assert not any(m["name"] == archiving.REQUEST_VOLUME
                   for m in containers["postgres"]["volumeMounts"])


@pytest.mark.parametrize(("retention", "value"), [
    ({"fullCount": 3}, "20261130T221505Z diff count 3"),
    ({"fullDays": 14}, "20261130T221505Z diff time 14"),
])
def test_a_backup_request_is_four_words_and_reads_back(retention: dict[str, int],
                                                       value: str) -> None:
    at = datetime(2026, 11, 30, 22, 15, 5, 999, tzinfo=UTC)
    request = archiving.backup_request(at, PhysicalBackupType.DIFFERENTIAL,
                                       PhysicalRetention.model_validate(retention))
    assert archiving.request_value(request) == value
    assert archiving.parse_request(value) == request
    for other in (None, "", "20261130T221505Z diff", "x diff count 3",
                  "20261130T221505Z weekly count 3", "20261130T221505Z full count -1"):
        assert archiving.parse_request(other) is None


def test_physical_backups_need_archiving_and_one_retention() -> None:
    physical = {"fullSchedule": "0 1 * * 0", "retention": {"fullCount": 2}}
    base = {"tenantRef": {"name": "acme"}, "storage": {"bucket": "backups"},
            "retention": {"keepLast": 3}}
    with pytest.raises(ValueError, match="physicalBackups needs continuousArchiving"):
        BackupPolicySpec.model_validate({**base, "physicalBackups": physical})
    archived = {**base, "continuousArchiving": {"repositoryCipherSecretRef": CIPHER}}
    assert BackupPolicySpec.model_validate({**archived, "physicalBackups": physical})
    for retention in ({}, {"fullCount": 2, "fullDays": 7}):
        with pytest.raises(ValueError, match="exactly one of fullCount and fullDays"):
            BackupPolicySpec.model_validate(
                {**archived, "physicalBackups": {**physical, "retention": retention}})


def test_replicas_never_archive() -> None:
    t = _archived(tenant({"components": {"postgres": {"readReplicas": 2}}}))
    sts = find(postgres.build(t), "StatefulSet", postgres.REPLICA_NAME)
    [server] = sts["spec"]["template"]["spec"]["containers"]
    assert not any("archive" in a for a in server["args"])


def test_an_http_endpoint_is_refused() -> None:
    with pytest.raises(ValueError, match=r"https storage\.endpoint"):
        _policy_spec({"bucket": "backups", "endpoint": "http://minio:9000"})


def test_the_primary_may_reach_the_endpoint_and_nothing_while_isolated() -> None:
    spec = _policy_spec()
    policy = backup_network.archive_egress("nightly", "tenant-acme", spec, tenant())
    assert policy["metadata"]["name"] == "nightly-archive-egress"
    assert policy["spec"]["podSelector"] == {"matchLabels": {
        COMPONENT_LABEL: "postgres", TENANT_LABEL: "acme"}}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert ports == {9443}
    isolated = backup_network.archive_egress("nightly", "tenant-acme", spec,
                                             tenant({"isolate": True}))
    assert isolated["spec"]["egress"] == []


def _policy(name: str, created: str, *, archives: bool = True,
            deleting: bool = False) -> dict[str, Any]:
    spec = _policy_spec().model_dump(mode="json", by_alias=True, exclude_none=True)
    if not archives:
        del spec["continuousArchiving"]
    # A place of its own: sharing one, the younger would be refused outright
    # (reconcile/backup_location.py).
    spec["storage"]["prefix"] = name
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    return {"metadata": meta, "spec": spec}


def test_the_oldest_archiving_policy_wins_and_others_do_not_count() -> None:
    policies = [
        _policy("zeta", "2026-11-01T00:00:00Z"),
        _policy("alpha", "2026-11-02T00:00:00Z"),
        _policy("dumps-only", "2026-10-01T00:00:00Z", archives=False),
        _policy("going", "2026-09-01T00:00:00Z", deleting=True),
        {"metadata": {"name": "broken", "creationTimestamp": "2026-08-01T00:00:00Z"},
         "spec": {"continuousArchiving": {"archiveTimeoutSeconds": 1}}},
    ]
    found = chosen_archiving(policies)
    assert found is not None and found.policy == "zeta"
    assert chosen_archiving(policies[2:]) is None
