"""reconcile/bootstrap.py against the API server: a clone's restore under way
keeps to the source policy it began from.

Re-chosen at every pass, the archiving policy of the source could be another
one by now (its owner moving the archive to a new bucket): the restore then
paired the new policy's bucket and keys with the old repository path, and the
primary's settings changed mid-restore. The nodes are kwok's; nothing runs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from stackforge_operator import API_GROUP, API_VERSION
from stackforge_operator.models.effective import resolve
from stackforge_operator.models.tenant import BootstrapStatus, StackForgeTenantSpec
from stackforge_operator.reconcile import bootstrap
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.secrets import S3_KEYS, put_secret

pytestmark = pytest.mark.usefixtures("kube_as_operator", "default_image_catalog")

API = f"{API_GROUP}/{API_VERSION}"
STARTED = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def _policy(name: str, namespace: str, bucket: str, *, clone_namespace: str,
            archives: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "tenantRef": {"name": "origin"}, "schedule": "0 2 * * *",
        "storage": {"bucket": bucket, "endpoint": "https://10.1.2.3:9000",
                    "credentialsSecretRef": {"name": "origin-s3"}},
        "retention": {"keepLast": 3}}
    if archives:
        spec["continuousArchiving"] = {
            "repositoryCipherSecretRef": {"name": "origin-cipher", "key": "passphrase"},
            "allowedRestoreNamespaces": [clone_namespace]}
    return {"apiVersion": API, "kind": "BackupPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def test_a_restore_under_way_keeps_to_the_policy_it_began_from(
        cluster: ClusterHandle, namespace: str) -> None:
    source_ns, clone_ns = namespace, f"{namespace}-c"[:63]
    tenants.apply(cluster, tenants.small_tenant("origin", namespace=source_ns))
    tenants.ensure_namespace(cluster, clone_ns)
    try:
        put_secret(cluster, source_ns, "origin-s3", S3_KEYS)
        put_secret(cluster, source_ns, "origin-cipher", {"passphrase": "not-a-real-one"})
        # The restore began from "archive-old"; its owner has since moved the
        # archive: "archive-new" archives, "archive-old" takes dumps only.
        for policy in (_policy("archive-old", source_ns, "old-bucket", clone_namespace=clone_ns,
                               archives=False),
                       _policy("archive-new", source_ns, "new-bucket", clone_namespace=clone_ns,
                               archives=True)):
            cluster.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-",
                            input=json.dumps(policy))
        spec = StackForgeTenantSpec.model_validate({
            **tenants.small_tenant("copy")["spec"],
            "bootstrap": {"recovery": {"tenant": "origin"}}})
        clone = resolve("copy", spec, namespace=clone_ns)
        recorded = BootstrapStatus(
            source_tenant="origin", source_namespace=source_ns, backup_policy="archive-old",
            repository_path="/stackforge/_pgbackrest/origin/7400000000000000001-x",
            recovery_target="2026-12-06T08:00:00Z", start_time=STARTED)

        prepared = bootstrap.prepare(clone, spec, recorded, STARTED)

        # Not the new policy's bucket with the old repository: stopped, saying why.
        assert isinstance(prepared, bootstrap.Held), prepared
        assert prepared.reason == "BootstrapSourceNotFound"
        assert "archive-old" in prepared.message and "no longer archives" in prepared.message
    finally:
        cluster.kubectl("delete", "namespace", clone_ns, "--wait=false", check=False)
