"""Which template the StatefulSet controller makes a pod from, with the update
strategy our builders write (builders/common.stateful_set).

An in-place recovery moves the primary to another pod number with another
template, and back (reconcile/recovery.py); it waits for the pod of the new
number, which must be made from the new template. With ``rollingUpdate`` left
unset the controller makes a missing pod below start + status.currentReplicas
from the current (old) revision; the partition written out makes every pod
from the newest.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client, watch

from stackforge_operator.builders import postgres
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import status_of
from tests.unit.builders.tenants import find, tenant

LABELS = {"app": "moved"}


def _statefulset(namespace: str, start: int, template: str,
                 strategy: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "moved", "namespace": namespace},
        "spec": {
            "replicas": 1, "serviceName": "moved", "ordinals": {"start": start},
            "selector": {"matchLabels": LABELS}, "updateStrategy": strategy,
            "template": {"metadata": {"labels": LABELS, "annotations": {"template": template}},
                         "spec": {"containers": [{"name": "c", "image": "moved:1"}]}}}}


def _first_template_of_pod(cluster: ClusterHandle, namespace: str,
                           strategy: dict[str, Any]) -> str:
    """Pod 1 on template A, then the set moved to pod 0 with template B in one
    apply: the template pod 0 is first made from.

    Read from a watch begun before the move, not by polling: on kwok's nodes a
    pod made from A is Ready, replaced by the rolling update and made again from
    B in well under a second, which a poll of a loaded machine can miss whole."""
    def apply(start: int, template: str) -> None:
        cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(
            _statefulset(namespace, start, template, strategy)))

    apps, core = client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)
    apply(1, "A")
    tenants.eventually(lambda: (status_of(apps.read_namespaced_stateful_set("moved", namespace))
                                .current_replicas == 1), timeout=60, interval=0.5)
    listed = core.list_namespaced_pod(namespace).metadata
    assert listed is not None  # a list's metadata, with its resourceVersion
    before_the_move = listed.resource_version
    apply(0, "B")
    stream = watch.Watch()
    for event in stream.stream(core.list_namespaced_pod, namespace,
                               resource_version=before_the_move, timeout_seconds=60):
        pod = event["object"]
        if event["type"] == "ADDED" and pod.metadata.name == "moved-0":
            stream.stop()
            template: str = (pod.metadata.annotations or {})["template"]
            return template
    raise AssertionError("pod moved-0 was not made within 60 s of the move")


def test_a_pod_moved_to_another_number_is_made_from_the_newest_template(
        cluster: ClusterHandle, namespace: str) -> None:
    ours = find(postgres.build(tenant()), "StatefulSet", "postgres")["spec"]["updateStrategy"]
    assert _first_template_of_pod(cluster, namespace, ours) == "B"


def test_without_the_partition_it_is_made_from_the_template_being_left(
        cluster: ClusterHandle, namespace: str) -> None:
    """Why the builders write the partition (kubernetes v1.36.3,
    newVersionedStatefulSetPod): what the recovery's roll-back met."""
    assert _first_template_of_pod(cluster, namespace, {"type": "RollingUpdate"}) == "A"
