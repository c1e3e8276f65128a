"""Why a workload's pods are not running, in the words of their own status.

A StatefulSet or Deployment only says "0/1 ready"; its pods say why: an image
that cannot be pulled, a container that crash-loops or was OOM-killed, a
Secret a container needs that is missing, a pod no node can take. Pure
functions over pod objects as the API returns them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Waiting reasons that only a change (of the spec, an image, a Secret) ends:
# retrying forever is what the kubelet does, not a way out.
_STUCK_WAITING = frozenset({
    "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff",
})
# Reasons of a container's last termination worth naming instead of the
# CrashLoopBackOff they lead to.
_TERMINATION_REASONS = frozenset({"OOMKilled", "ContainerCannotRun", "StartError"})
MAX_MESSAGE = 512
# A container that stopped because its volume is full (ENOSPC, in the log
# tail the kubelet keeps as its termination message): only a larger volume,
# or less data, ends it.
DISK_FULL = "DiskFull"
NO_SPACE = "No space left on device"


@dataclass(frozen=True)
class PodFault:
    """What keeps one pod from running."""

    pod: str
    reason: str
    message: str
    # False: it stays this way until someone changes something (the tenant is Stalled).
    heals_by_itself: bool

    def describe(self) -> str:
        return f"{self.pod}: {self.reason}: {self.message}" if self.message else (
            f"{self.pod}: {self.reason}")


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def no_space_line(termination_message: str) -> str | None:
    """The last line of a termination message that says the disk is full, if any."""
    lines = [line for line in termination_message.splitlines() if NO_SPACE in line]
    return lines[-1].strip() if lines else None


def _disk_full(pod: str, container: Mapping[str, Any]) -> PodFault | None:
    """A container stopped, or not serving since, after its volume filled up."""
    state = container.get("state") or {}
    if "running" in state and container.get("ready"):
        return None  # it serves again (the volume grew, or data went)
    # Started again but not ready (a crash-looping server's few seconds of
    # recovery) is still the full volume until it proves otherwise: the
    # condition, and the alert, must not flap with each restart.
    stopped = state.get("terminated") or (container.get("lastState") or {}).get("terminated")
    line = no_space_line((stopped or {}).get("message") or "")
    if line is None:
        return None
    return PodFault(pod, DISK_FULL,
                    _clip(f"container {container.get('name')} stopped: its volume is full "
                          f"and must grow ({line})"), heals_by_itself=False)


def _container_fault(pod: str, container: Mapping[str, Any]) -> PodFault | None:
    disk_full = _disk_full(pod, container)
    if disk_full is not None:
        return disk_full
    state = container.get("state") or {}
    waiting = state.get("waiting")
    last = (container.get("lastState") or {}).get("terminated") or {}
    if waiting and waiting.get("reason") in _STUCK_WAITING:
        reason, message = waiting["reason"], waiting.get("message") or ""
        if reason == "CrashLoopBackOff" and last.get("reason") in _TERMINATION_REASONS:
            # "back-off restarting failed container" says less than why it failed.
            exit_code = last.get("exitCode")
            reason = last["reason"]
            message = (f"container {container.get('name')} was killed ({reason}, exit code "
                       f"{exit_code}) and is restarting with back-off"
                       + (f": {last['message']}" if last.get("message") else ""))
        return PodFault(pod, reason, _clip(message), heals_by_itself=False)
    terminated = state.get("terminated") or {}
    if terminated.get("reason") in _TERMINATION_REASONS:
        return PodFault(pod, terminated["reason"],
                        _clip(f"container {container.get('name')} ended with exit code "
                              f"{terminated.get('exitCode')}"), heals_by_itself=False)
    return None


def pod_fault(pod: Mapping[str, Any]) -> PodFault | None:
    """The first reason this pod does not run, or None (running, or only starting)."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    for container in [*(status.get("initContainerStatuses") or []),
                      *(status.get("containerStatuses") or [])]:
        fault = _container_fault(name, container)
        if fault is not None:
            return fault
    for condition in status.get("conditions") or []:
        if (condition.get("type") == "PodScheduled" and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"):
            # Capacity may come (a node joins, another pod goes): it can heal.
            return PodFault(name, "Unschedulable", _clip(condition.get("message") or ""),
                            heals_by_itself=True)
    return None


def ready(pod: Mapping[str, Any] | None) -> bool:
    """Whether the pod is Ready and staying (not being deleted: on its way out,
    whatever it still serves, it is about to stop)."""
    if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def selects(selector: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """Whether a workload's ``matchLabels`` selector takes this pod."""
    wanted = selector.get("matchLabels") or {}
    labels = pod["metadata"].get("labels") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def _own_staying_pods(workload: Mapping[str, Any],
                      pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The workload's pods (by name order) but those being deleted: on their way out,
    a replacement will say its own."""
    selector = (workload.get("spec") or {}).get("selector") or {}
    return sorted((p for p in pods
                   if selects(selector, p) and not p["metadata"].get("deletionTimestamp")),
                  key=lambda p: p["metadata"]["name"])


def workload_fault(workload: Mapping[str, Any],
                   pods: Iterable[Mapping[str, Any]]) -> PodFault | None:
    """The first fault among the workload's own pods (by name order), if any."""
    for pod in _own_staying_pods(workload, pods):
        fault = pod_fault(pod)
        if fault is not None:
            return fault
    return None


# The StatefulSet controller's label on each pod: the revision (template) it was made from.
REVISION_LABEL = "controller-revision-hash"


def status_observed(workload: Mapping[str, Any] | None) -> bool:
    """Whether a workload's status is of its current spec: its controller has seen
    the generation (until then, what the status says is about the spec before)."""
    state = (workload or {}).get("status") or {}
    generation = ((workload or {}).get("metadata") or {}).get("generation") or 0
    return int(state.get("observedGeneration") or 0) >= int(generation)


def stuck_on_an_old_revision(statefulset: Mapping[str, Any],
                             pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """Pods of a StatefulSet that will never be replaced by themselves: broken (a fault
    that does not heal) and of a revision older than the one the set now wants.

    A StatefulSet rolls a pod only once it is Running and Ready, so a pod broken by
    the old template (OOM-killed, a bad image) keeps crash-looping after the spec
    is fixed; Kubernetes' answer is to delete it, and the set makes it again from
    the new template (what a person would do, done for them).
    """
    status = statefulset.get("status") or {}
    wanted = status.get("updateRevision")
    # A status older than the spec names the revision before the newest: a pod of
    # the newest template, broken on its own (a new image not pulled), would look
    # old, and be deleted again and again.
    if not wanted or not status_observed(statefulset):
        return []
    stuck = []
    for pod in _own_staying_pods(statefulset, pods):
        revision = (pod["metadata"].get("labels") or {}).get(REVISION_LABEL)
        if revision in (None, wanted):
            continue
        fault = pod_fault(pod)
        if fault is not None and not fault.heals_by_itself:
            stuck.append(pod["metadata"]["name"])
    return stuck


def job_conditions(job: Mapping[str, Any] | None) -> set[str]:
    """The types of a Job's true conditions ("Complete", "Failed", ...)."""
    return {c.get("type") for c in ((job or {}).get("status") or {}).get("conditions") or []
            if c.get("status") == "True"}


def job_ended(job: Mapping[str, Any] | None) -> bool:
    """Whether the Job has ended, done or failed for good."""
    return bool(job_conditions(job) & {"Complete", "Failed"})


def job_messages(pods: Iterable[Mapping[str, Any]], job: str) -> list[str]:
    """The termination messages of the containers of ``job``'s pods, those that have one."""
    return [message
            for pod in pods
            if ((pod.get("metadata") or {}).get("labels") or {}).get("job-name") == job
            for container in (pod.get("status") or {}).get("containerStatuses") or []
            if (message := ((container.get("state") or {}).get("terminated") or {})
                .get("message"))]


def result_of(
    messages: Sequence[str], parse: Callable[[str], dict[str, Any] | None], *,
    log_tail_as_message: bool = False,
) -> dict[str, Any]:
    """The first result line among a runner's termination ``messages`` (``parse`` is
    the runner's own reader, which also finds it in a log tail). Without one (the
    runner died before it could say, or refused its arguments) and with
    ``log_tail_as_message``: the end of what it printed, as ``message``."""
    for message in messages:
        parsed = parse(message)
        if parsed is not None:
            return parsed
    if log_tail_as_message and messages:
        return {"message": messages[-1].strip()[-512:]}
    return {}
