"""pod_health.py: a pod's own status says why it does not run (pod objects as the API
returns them, shaped after what a kubelet reported on the real node)."""

from __future__ import annotations

from typing import Any

from stackforge_operator import pod_health, status

SELECTOR = {"matchLabels": {"stackforge.io/tenant": "acme", "stackforge.io/component": "postgres"}}


def _pod(name: str = "postgres-0", *, containers: list[dict[str, Any]] | None = None,
         conditions: list[dict[str, Any]] | None = None, deleting: bool = False,
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or dict(SELECTOR["matchLabels"])}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-29T00:00:00Z"
    return {"metadata": meta, "status": {"containerStatuses": containers or [],
                                         "conditions": conditions or []}}


def _waiting(reason: str, message: str = "", last: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "postgres",
                                 "state": {"waiting": {"reason": reason, "message": message}}}
    if last:
        container["lastState"] = {"terminated": last}
    return container


PULL = ('Back-off pulling image "localhost/stackforge/postgres:99": ErrImagePull: '
        'failed to resolve reference')


def test_an_image_that_cannot_be_pulled_is_named_with_the_kubelets_message() -> None:
    fault = pod_health.pod_fault(_pod(containers=[_waiting("ImagePullBackOff", PULL)]))
    assert fault == pod_health.PodFault("postgres-0", "ImagePullBackOff", PULL, False)
    assert fault.describe() == f"postgres-0: ImagePullBackOff: {PULL}"


def test_a_crash_loop_after_an_oom_kill_is_reported_as_the_oom_kill() -> None:
    container = _waiting("CrashLoopBackOff", "back-off 40s restarting failed container",
                         last={"reason": "OOMKilled", "exitCode": 137})
    fault = pod_health.pod_fault(_pod(containers=[container]))
    assert fault is not None and fault.reason == "OOMKilled"
    assert "exit code 137" in fault.message and not fault.heals_by_itself


def test_a_plain_crash_loop_keeps_its_reason() -> None:
    container = _waiting("CrashLoopBackOff", "back-off 10s",
                         last={"reason": "Error", "exitCode": 1})
    fault = pod_health.pod_fault(_pod(containers=[container]))
    assert fault is not None and (fault.reason, fault.message) == ("CrashLoopBackOff",
                                                                    "back-off 10s")


# The log tail PostgreSQL 15 left when its volume filled (a loopback server on
# a 96 MiB tmpfs, the crash recovery after the PANIC failing the same way).
NO_SPACE_TAIL = """\
LOG:  redo done at 0/2FFFB90 system usage: CPU: user: 0.03 s, system: 0.04 s, elapsed: 0.08 s
FATAL:  could not write to file "pg_wal/xlogtemp.21590": No space left on device
LOG:  startup process (PID 21590) exited with exit code 1
LOG:  shutting down due to startup process failure
LOG:  database system is shut down
"""


def test_a_server_stopped_by_a_full_volume_is_disk_full_with_its_own_line() -> None:
    container = _waiting("CrashLoopBackOff", "back-off 20s",
                         last={"reason": "Error", "exitCode": 1, "message": NO_SPACE_TAIL})
    fault = pod_health.pod_fault(_pod(containers=[container]))
    assert fault is not None and fault.reason == pod_health.DISK_FULL
    assert not fault.heals_by_itself
    assert fault.message == ('container postgres stopped: its volume is full and must grow '
                             '(FATAL: could not write to file "pg_wal/xlogtemp.21590": '
                             'No space left on device)')


def test_a_server_just_stopped_by_a_full_volume_is_disk_full_before_its_back_off() -> None:
    container = {"name": "postgres", "state": {"terminated": {
        "reason": "Error", "exitCode": 1, "message": NO_SPACE_TAIL}}}
    fault = pod_health.pod_fault(_pod(containers=[container]))
    assert fault is not None and fault.reason == pod_health.DISK_FULL


def test_a_server_serving_again_after_a_full_volume_has_no_fault() -> None:
    container = {"name": "postgres", "state": {"running": {}}, "ready": True,
                 "lastState": {"terminated": {"reason": "Error", "exitCode": 1,
                                              "message": NO_SPACE_TAIL}}}
    assert pod_health.pod_fault(_pod(containers=[container])) is None


def test_a_server_restarted_but_not_ready_after_a_full_volume_is_still_disk_full() -> None:
    """Between two crashes of the loop it runs for a few seconds: no flapping."""
    container = {"name": "postgres", "state": {"running": {}}, "ready": False,
                 "lastState": {"terminated": {"reason": "Error", "exitCode": 1,
                                              "message": NO_SPACE_TAIL}}}
    fault = pod_health.pod_fault(_pod(containers=[container]))
    assert fault is not None and fault.reason == pod_health.DISK_FULL


def test_a_crash_loop_for_another_cause_is_not_disk_full() -> None:
    container = _waiting("CrashLoopBackOff", "back-off 10s", last={
        "reason": "Error", "exitCode": 1,
        "message": "FATAL:  data directory has invalid permissions"})
    fault = pod_health.pod_fault(_pod(containers=[container]))
    assert fault is not None and fault.reason == "CrashLoopBackOff"


def test_a_missing_secret_is_a_config_error() -> None:
    message = 'secret "postgres-credentials" not found'
    fault = pod_health.pod_fault(_pod(containers=[_waiting("CreateContainerConfigError",
                                                           message)]))
    assert fault is not None and fault.reason == "CreateContainerConfigError"
    assert fault.message == message


def test_unschedulable_is_reported_but_may_heal() -> None:
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/1 nodes are available: 1 Insufficient memory."}
    fault = pod_health.pod_fault(_pod(conditions=[condition]))
    assert fault == pod_health.PodFault("postgres-0", "Unschedulable",
                                        "0/1 nodes are available: 1 Insufficient memory.", True)


def test_starting_and_running_pods_have_no_fault() -> None:
    assert pod_health.pod_fault(_pod(containers=[_waiting("ContainerCreating")])) is None
    running = {"name": "postgres", "state": {"running": {"startedAt": "2026-11-29T00:00:00Z"}}}
    assert pod_health.pod_fault(_pod(containers=[running])) is None


def test_long_messages_are_clipped_to_one_line() -> None:
    fault = pod_health.pod_fault(_pod(containers=[_waiting("ErrImagePull", "x\n" * 600)]))
    assert fault is not None and len(fault.message) == pod_health.MAX_MESSAGE
    assert "\n" not in fault.message and fault.message.endswith("...")


def test_a_workload_looks_only_at_its_own_live_pods() -> None:
    workload = {"spec": {"selector": SELECTOR}}
    other = _pod("redis-0", containers=[_waiting("ImagePullBackOff", "redis")],
                 labels={"stackforge.io/tenant": "acme", "stackforge.io/component": "redis"})
    leaving = _pod("postgres-0", containers=[_waiting("ImagePullBackOff", "old")],
                   deleting=True)
    current = _pod("postgres-1", containers=[_waiting("ErrImagePull", "new")])
    assert pod_health.workload_fault(workload, [other, leaving, current]) == (
        pod_health.PodFault("postgres-1", "ErrImagePull", "new", False))
    assert pod_health.workload_fault({"spec": {}}, [current]) is None  # no selector: none


def _statefulset() -> tuple[dict[str, Any], dict[str, Any]]:
    desired = {"kind": "StatefulSet", "metadata": {
        "name": "postgres", "labels": {"app.kubernetes.io/component": "postgres"}}}
    live = {"metadata": {"name": "postgres", "generation": 1},
            "spec": {"replicas": 1, "selector": SELECTOR},
            "status": {"observedGeneration": 1, "readyReplicas": 0, "replicas": 1}}
    return desired, live


def test_the_component_condition_carries_the_pods_reason_and_the_tenant_stalls() -> None:
    desired, live = _statefulset()
    pod = _pod(containers=[_waiting("ImagePullBackOff", PULL)])
    state = status.with_pod_fault(status.workload_state(desired, live), live, [pod])
    [observation] = status.component_observations([state])
    assert (observation.type, observation.status.value, observation.reason) == (
        "PostgresReady", "False", "ImagePullBackOff")
    assert PULL in observation.message
    [problem] = status.stuck_workloads([state])
    assert problem.reason == "ImagePullBackOff" and "postgres-0" in problem.message
    progress, reason, _ = status.tenant_progress([observation], [], [problem],
                                                 suspended=False)
    assert (progress, reason) == (status.Progress.STALLED, "ImagePullBackOff")


def test_without_a_pod_fault_the_component_is_only_not_ready() -> None:
    desired, live = _statefulset()
    state = status.with_pod_fault(status.workload_state(desired, live), live,
                                  [_pod(containers=[_waiting("ContainerCreating")])])
    [observation] = status.component_observations([state])
    assert observation.reason == "NotReady" and status.stuck_workloads([state]) == []


def test_a_broken_pod_of_an_old_revision_is_the_one_to_replace() -> None:
    statefulset: dict[str, Any] = {"spec": {"selector": SELECTOR},
                                   "status": {"updateRevision": "postgres-new"}}
    oom = _waiting("CrashLoopBackOff", "back-off", last={"reason": "OOMKilled", "exitCode": 137})

    def pod(name: str, revision: str, *containers: dict[str, Any]) -> dict[str, Any]:
        made = _pod(name, containers=list(containers))
        made["metadata"]["labels"]["controller-revision-hash"] = revision
        return made

    pods = [pod("postgres-0", "postgres-old", oom),  # broken by the old template: replace
            pod("postgres-1", "postgres-new", oom),  # the current template: its own problem
            pod("postgres-2", "postgres-old"),  # old but running: the set rolls it itself
            ]
    assert pod_health.stuck_on_an_old_revision(statefulset, pods) == ["postgres-0"]
    assert pod_health.stuck_on_an_old_revision({"spec": {"selector": SELECTOR}}, pods) == []
    # A status not yet of the newest spec: its updateRevision may be the old one.
    unseen = {**statefulset, "metadata": {"generation": 5},
              "status": {"updateRevision": "postgres-new", "observedGeneration": 4}}
    assert pod_health.stuck_on_an_old_revision(unseen, pods) == []
    seen = {**unseen, "status": {**unseen["status"], "observedGeneration": 5}}
    assert pod_health.stuck_on_an_old_revision(seen, pods) == ["postgres-0"]


def test_a_job_has_ended_once_complete_or_failed_is_true() -> None:
    def job(*conditions: tuple[str, str]) -> dict[str, Any]:
        return {"status": {"conditions": [{"type": t, "status": s} for t, s in conditions]}}

    assert not pod_health.job_ended(None)
    assert not pod_health.job_ended(job())
    assert not pod_health.job_ended(job(("SuccessCriteriaMet", "True"), ("Complete", "False")))
    assert pod_health.job_ended(job(("SuccessCriteriaMet", "True"), ("Complete", "True")))
    assert pod_health.job_ended(job(("FailureTarget", "True"), ("Failed", "True")))
