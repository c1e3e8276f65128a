"""reconcile/backup.py against the API server: two BackupPolicies of one tenant
in one place of a bucket.

Each policy's retention prunes every run under ``<prefix>/<tenant>/``: two there
deleted each other's backups. The younger is refused before it makes or runs
anything, and one moved onto the older's place loses its CronJob. The
refused path ends before any S3 request, so no object store is needed; the
nodes are kwok's (nothing has to run).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stackforge_operator import API_GROUP, API_VERSION
from stackforge_operator.builders import backup as builders
from stackforge_operator.reconcile import backup
from tests.support import tenants
from tests.support.clusters import ClusterHandle

pytestmark = pytest.mark.usefixtures("kube_as_operator", "default_image_catalog")

API = f"{API_GROUP}/{API_VERSION}"


def _apply_policy(cluster: ClusterHandle, namespace: str, name: str, prefix: str) -> None:
    cluster.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-",
                    input=json.dumps({
                        "apiVersion": API, "kind": "BackupPolicy",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": {"tenantRef": {"name": "shared"}, "schedule": "0 2 * * *",
                                 "storage": {"bucket": "backups", "prefix": prefix},
                                 "retention": {"keepLast": 2}}}))


def _policy(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    found = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, "backuppolicies", name)
    assert isinstance(found, dict)  # the client types a custom object as a bare object
    return found


def _cron_job_exists(cluster: ClusterHandle, namespace: str, policy: str) -> bool:
    try:
        job = client.BatchV1Api(cluster.api).read_namespaced_cron_job(
            builders.cron_job_name(policy), namespace)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return job.metadata is not None and job.metadata.deletion_timestamp is None


def test_a_second_policy_in_the_same_place_is_refused_and_runs_nothing(
        cluster: ClusterHandle, namespace: str) -> None:
    tenants.apply(cluster, tenants.small_tenant("shared", namespace=namespace))
    # Named in the order they are made: created in one second, the name decides.
    _apply_policy(cluster, namespace, "a-nightly", "stackforge")
    _apply_policy(cluster, namespace, "b-hourly", "stackforge")

    outcome = backup.reconcile(_policy(cluster, namespace, "b-hourly"))
    assert outcome.requeue_after == backup.STALLED_SECONDS
    refused = _policy(cluster, namespace, "b-hourly")
    found = tenants.condition(refused, "Stalled") or {}
    assert (found.get("status"), found.get("reason")) == ("True", "StorageInUse"), found
    assert "BackupPolicy a-nightly" in found["message"]
    assert "s3://backups/stackforge/shared/" in found["message"]
    assert not _cron_job_exists(cluster, namespace, "b-hourly")


def test_a_policy_moved_onto_anothers_place_loses_its_cron_job(
        cluster: ClusterHandle, namespace: str) -> None:
    tenants.apply(cluster, tenants.small_tenant("shared", namespace=namespace))
    _apply_policy(cluster, namespace, "a-nightly", "stackforge")
    _apply_policy(cluster, namespace, "b-hourly", "hourly")
    # The CronJob it made while in a place of its own (kwok runs none of its Jobs).
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": builders.cron_job_name("b-hourly")},
        "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "backup", "image": "stackforge-operator:test"}]}}}}}}))
    assert _cron_job_exists(cluster, namespace, "b-hourly")

    _apply_policy(cluster, namespace, "b-hourly", "stackforge")  # moved
    backup.reconcile(_policy(cluster, namespace, "b-hourly"))
    found = tenants.condition(_policy(cluster, namespace, "b-hourly"), "Stalled") or {}
    assert found.get("reason") == "StorageInUse", found
    assert not _cron_job_exists(cluster, namespace, "b-hourly")
