"""What the containers that failed during a test said, for its failure report.

A runner's output is in its pod's log and termination message only; the
namespaces of a module go at its end, and with them the one record of why a Job
failed (a landing CI lost a backup Job's reason that way). A failed test's
report gets, for every container that exited non-zero since the test began, its
termination message and the tail of its log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

LOG_LINES = 30


@dataclass(frozen=True)
class FailedContainer:
    namespace: str
    pod: str
    container: str
    exit_code: int
    finished: datetime
    message: str
    # Whether the failure is the container's previous run (it was restarted).
    previous: bool

    def heading(self) -> str:
        run = "previous run" if self.previous else "last run"
        return (f"{self.namespace}/{self.pod} container {self.container} exited "
                f"{self.exit_code} at {self.finished.isoformat()} ({run})")


def _terminated(state: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    found = (state or {}).get("terminated")
    return found if found and found.get("exitCode") else None


def failed_since(pods: Iterable[Mapping[str, Any]], since: datetime) -> list[FailedContainer]:
    """The containers of ``pods`` (API objects as dicts, camelCase) that exited non-zero
    after ``since``: in their current state, or in the last one if they were restarted."""
    found = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        statuses = (pod.get("status") or {})
        for container in [*(statuses.get("initContainerStatuses") or []),
                          *(statuses.get("containerStatuses") or [])]:
            for previous, state in ((False, container.get("state")),
                                    (True, container.get("lastState"))):
                ended = _terminated(state)
                if ended is None or not ended.get("finishedAt"):
                    continue
                finished = datetime.fromisoformat(str(ended["finishedAt"]))
                if finished < since:
                    continue
                found.append(FailedContainer(
                    namespace=str(meta.get("namespace")), pod=str(meta.get("name")),
                    container=str(container.get("name")), exit_code=int(ended["exitCode"]),
                    finished=finished, message=str(ended.get("message") or "").strip(),
                    previous=previous))
    return sorted(found, key=lambda f: f.finished)


def report(api: client.ApiClient, since: datetime) -> str:
    """The failed containers since ``since`` cluster-wide, each with its termination
    message and its log's tail ("" when none failed)."""
    core = client.CoreV1Api(api)
    pods = api.sanitize_for_serialization(core.list_pod_for_all_namespaces().items)
    sections = []
    for failed in failed_since(pods, since):
        try:
            log = core.read_namespaced_pod_log(
                failed.pod, failed.namespace, container=failed.container,
                previous=failed.previous, tail_lines=LOG_LINES)
        except ApiException as error:
            log = f"(no log: {error.status} {error.reason})"
        sections.append("\n".join([
            f"== {failed.heading()}",
            f"-- termination message:\n{failed.message or '(none)'}",
            f"-- last {LOG_LINES} log lines:\n{str(log).rstrip()}"]))
    return "\n\n".join(sections)
