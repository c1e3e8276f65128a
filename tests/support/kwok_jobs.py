"""What kwok's nodes never do, done by a test: the Job controller's record of a
Job whose pod succeeded (no runner pod runs, so no Job ends by itself), and a
pod that stays as written (never scheduled, so no stage rewrites its status)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from tests.support import tenants
from tests.support.clusters import ClusterHandle


def record_success(cluster: ClusterHandle, namespace: str, job: str,
                   finished: datetime | None = None) -> None:
    """The Job Complete at ``finished`` (now by default), as its controller says it."""
    now = (finished or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Set once by the Job controller, then immutable: the same value is sent back.
    started = tenants.eventually(lambda: (client.BatchV1Api(cluster.api).read_namespaced_job(
        job, namespace).status or client.V1JobStatus()).start_time, timeout=30)
    cluster.kubectl("patch", "jobs.batch", job, "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": {
                        "startTime": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "completionTime": now, "active": 0, "succeeded": 1,
                        "ready": 0, "terminating": 0, "conditions": [
                            {"type": "SuccessCriteriaMet", "status": "True",
                             "lastTransitionTime": now, "lastProbeTime": now},
                            {"type": "Complete", "status": "True",
                             "lastTransitionTime": now, "lastProbeTime": now}]}}))


def unscheduled_pod(cluster: ClusterHandle, namespace: str, name: str, container: str, *,
                    labels: dict[str, str] | None = None,
                    annotations: dict[str, str] | None = None) -> None:
    """A pod no scheduler takes (none by its name): only what a test writes into its
    status speaks. Restricted Pod Security, as tenant namespaces enforce it."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"schedulerName": "nobody",
                 "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                     "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{"name": container, "image": f"{container}:unscheduled",
                                 "securityContext": {
                                     "allowPrivilegeEscalation": False,
                                     "capabilities": {"drop": ["ALL"]}}}]}}))


def runner_said(cluster: ClusterHandle, namespace: str, job: str, container: str,
                result: dict[str, Any]) -> None:
    """A pod of ``job`` whose runner ended with ``result`` as its termination
    message, as a runner's pod on a kubelet does (kwok's pods never end):
    never scheduled, so only this status speaks."""
    name = f"{job}-ended"
    unscheduled_pod(cluster, namespace, name, container, labels={"job-name": job})
    cluster.kubectl("patch", "pod", name, "-n", namespace,
                    "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
                        "phase": "Succeeded", "containerStatuses": [{
                            "name": container, "image": f"{container}:unscheduled",
                            "imageID": "", "ready": False, "restartCount": 0,
                            "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                     "message": json.dumps(result)}}}]}}))

