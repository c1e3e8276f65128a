"""What the Job controller records when a Job's pod succeeds, written by a test:
on kwok nodes no runner pod runs, so its Job never ends by itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime

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
