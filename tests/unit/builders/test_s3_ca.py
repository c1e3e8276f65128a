"""spec.storage.endpointCA in the runner pods: the backup Job, the drill's restore Job."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from stackforge_operator.builders import backup, drill, s3ca
from stackforge_operator.models.backup import BackupPolicySpec
from stackforge_operator.models.drill import DRDrillSpec
from tests.unit.builders.tenants import tenant

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _policy(endpoint_ca: dict[str, str] | None) -> BackupPolicySpec:
    storage: dict[str, Any] = {"bucket": "backups", "endpoint": "https://s3.storage.svc:9000",
                               "forcePathStyle": True,
                               "credentialsSecretRef": {"name": "acme-s3"}}
    if endpoint_ca is not None:
        storage["endpointCA"] = endpoint_ca
    return BackupPolicySpec.model_validate({
        "tenantRef": {"name": "acme"}, "storage": storage, "retention": {"keepLast": 3}})


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod["containers"]
    assert len(containers) == 1
    return containers[0]


def _backup_pod(spec: BackupPolicySpec) -> dict[str, Any]:
    pod: dict[str, Any] = backup.job_template("nightly", spec, tenant())["spec"]["template"]["spec"]
    return pod


def _restore_pod(*, with_s3_ca: bool) -> dict[str, Any]:
    job = drill.restore_job(
        "drill-acme-1", "monthly", "tenant-acme", DRDrillSpec.model_validate(
            {"tenantRef": {"name": "acme"}}), tenant(),
        storage={"bucket": "backups", "endpoint": "https://s3.storage.svc:9000"},
        backup_id="latest", started_at=datetime(2026, 1, 1, tzinfo=UTC),
        rto_seconds=3600, rpo_seconds=3600, with_s3_keys=True, with_s3_ca=with_s3_ca)
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def _ca_wiring(pod: dict[str, Any]) -> tuple[Any, Any, Any]:
    container = _container(pod)
    env = [e for e in container["env"] if e["name"] == "AWS_CA_BUNDLE"]
    mounts = [m for m in container["volumeMounts"] if m["name"] == s3ca.CA_VOLUME]
    volumes = [v for v in pod["volumes"] if v["name"] == s3ca.CA_VOLUME]
    return env, mounts, volumes


def test_backup_job_mounts_the_ca_key_and_points_aws_ca_bundle_at_it() -> None:
    pod = _backup_pod(_policy({"name": "s3-ca", "key": "bundle.pem"}))
    env, mounts, volumes = _ca_wiring(pod)
    assert env == [{"name": "AWS_CA_BUNDLE", "value": "/etc/stackforge/s3-ca/ca.crt"}]
    assert mounts == [{"name": "s3-ca", "mountPath": "/etc/stackforge/s3-ca", "readOnly": True}]
    # Only the one key, under the fixed name, whatever the Secret calls it.
    assert volumes == [{"name": "s3-ca", "secret": {
        "secretName": "s3-ca", "items": [{"key": "bundle.pem", "path": "ca.crt"}]}}]
    assert f"{mounts[0]['mountPath']}/ca.crt" == env[0]["value"] == s3ca.CA_PATH
    # The path is the runner's business only through the environment: no flag for it.
    assert not any("ca" in a.lower() and a.startswith("--") for a in _container(pod)["args"])


def test_backup_job_default_key_is_ca_crt() -> None:
    _, _, volumes = _ca_wiring(_backup_pod(_policy({"name": "s3-ca"})))
    assert volumes[0]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]


def test_backup_job_without_endpoint_ca_keeps_the_system_cas() -> None:
    pod = _backup_pod(_policy(None))
    assert _ca_wiring(pod) == ([], [], [])
    assert {v["name"] for v in pod["volumes"]} == {"configuration", "tmp"}


@pytest.mark.parametrize("with_s3_ca", [True, False])
def test_restore_job_verifies_s3_with_the_sandbox_copy(with_s3_ca: bool) -> None:
    env, mounts, volumes = _ca_wiring(_restore_pod(with_s3_ca=with_s3_ca))
    if not with_s3_ca:
        assert (env, mounts, volumes) == ([], [], [])
        return
    assert env == [{"name": "AWS_CA_BUNDLE", "value": s3ca.CA_PATH}]
    assert mounts == [s3ca.mount()]
    assert volumes == [{"name": "s3-ca", "secret": {
        "secretName": drill.S3_CA_SECRET, "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]


def test_sandbox_secrets_carry_the_ca_copy() -> None:
    found = drill.secrets("drill-acme-1", "monthly", "tenant-acme", "pw",
                          {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"}, PEM)
    by_name = {s["metadata"]["name"]: s for s in found}
    assert set(by_name) == {drill.SCRATCH_SECRET, drill.S3_SECRET, drill.S3_CA_SECRET}
    ca = by_name[drill.S3_CA_SECRET]
    assert ca["metadata"]["namespace"] == "drill-acme-1"
    assert base64.b64decode(ca["data"]["ca.crt"]).decode() == PEM
    without = drill.secrets("drill-acme-1", "monthly", "tenant-acme", "pw", {})
    assert [s["metadata"]["name"] for s in without] == [drill.SCRATCH_SECRET]


def test_pull_secrets_are_copied_as_they_are() -> None:
    config = base64.b64encode(b'{"auths": {}}').decode()
    live = {
        "regcred": {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                    "metadata": {"name": "regcred", "namespace": "tenant-acme", "uid": "u1",
                                 "resourceVersion": "7", "ownerReferences": [{"uid": "x"}]},
                    "data": {".dockerconfigjson": config}},
    }
    [copy] = drill.pull_secret_copies("drill-acme-1", "monthly", "tenant-acme", live)
    assert copy["type"] == "kubernetes.io/dockerconfigjson"
    assert copy["data"] == {".dockerconfigjson": config}  # still base64, never decoded
    meta = copy["metadata"]
    assert (meta["name"], meta["namespace"]) == ("regcred", "drill-acme-1")
    # Nothing of the original's identity: the copy is the sandbox's, deleted with it.
    assert not {"uid", "resourceVersion", "ownerReferences"} & set(meta)
    assert drill.pull_secret_copies("drill-acme-1", "monthly", "tenant-acme", {}) == []


def test_a_pull_secret_never_replaces_a_sandbox_secret() -> None:
    with pytest.raises(ValueError, match=drill.S3_SECRET):
        drill.pull_secret_copies("drill-acme-1", "monthly", "tenant-acme",
                                 {drill.S3_SECRET: {"data": {}}})
