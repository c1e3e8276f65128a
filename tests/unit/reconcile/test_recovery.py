"""In-place recovery: what starts one, each step's way forward, its roll-back, and
how the tenant is built meanwhile.

(The recovery itself on running pods: tests/realnode/test_archiving.py.)
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stackforge_operator import config, pod_health
from stackforge_operator.builders import apps, postgres, stack
from stackforge_operator.builders.drill import PhysicalSource
from stackforge_operator.models.backup import BackupPolicySpec
from stackforge_operator.models.tenant import KEPT_VOLUMES_MAX, RecoveryPhase, RecoveryStatus
from stackforge_operator.reconcile import archiving_policy, recovery
from stackforge_operator.reconcile.recovery import Facts, Phase
from tests.unit.builders.tenants import ENTERPRISE, find, tenant

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
TARGET = "2026-12-01T05:40:00Z"
REPOSITORY = "/backups/_pgbackrest/acme/7400000000000000001-20261129T000000Z"
CONFIRM = f"tenant-acme/acme@{TARGET}"


def _annotations(**values: str) -> dict[str, str]:
    return {f"stackforge.io/{k.replace('_', '-')}": v for k, v in values.items()}


def _request(**values: str) -> recovery.Request | str | None:
    return recovery.request(_annotations(**values), "tenant-acme", "acme", None, NOW)


def _policy() -> BackupPolicySpec:
    return BackupPolicySpec.model_validate({
        "tenantRef": {"name": "acme"},
        "storage": {"bucket": "backups", "prefix": "backups",
                    "credentialsSecretRef": {"name": "s3-credentials"}},
        "retention": {"keepLast": 7},
        "continuousArchiving": {
            "repositoryCipherSecretRef": {"name": "cipher", "key": "passphrase"}}})


def _begun(previous: RecoveryStatus | None = None) -> RecoveryStatus:
    wanted = _request(recover_to=TARGET, recover_confirm=CONFIRM)
    assert isinstance(wanted, recovery.Request)
    return recovery.begin(wanted, PhysicalSource(REPOSITORY, TARGET), "archive", previous, NOW,
                          fingerprint=archiving_policy.fingerprint(_policy()))


def _pod(name: str, *, ready: bool = True, component: str = "postgres",
         restarts: int = 0, exit_code: int = 0, labels: dict[str, str] | None = None,
         message: str = "", revision: str = "postgres-b") -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{
            "name": "postgres", "restartCount": restarts,
            "lastState": {"terminated": {"exitCode": exit_code}} if exit_code else {},
            "state": {"terminated": {"message": message}} if message else {}}]}
    return {"metadata": {"name": name, "labels": {
        "app.kubernetes.io/component": component, pod_health.REVISION_LABEL: revision,
        **(labels or {})}}, "status": status}


def _facts(*pods: dict[str, Any], statefulset: dict[str, Any] | None = None,
           job: dict[str, Any] | None = None, at: datetime = NOW,
           apps: tuple[dict[str, Any], ...] = ()) -> Facts:
    return Facts(at, {p["metadata"]["name"]: p for p in pods}, statefulset, job, apps)


def _in(phase: RecoveryPhase, steps: int = 1) -> RecoveryStatus:
    """A recovery in ``phase``, got there the way advance gets it."""
    found = _begun()
    path = [Phase.STOPPING_WRITES, Phase.RESTORING, Phase.VERIFYING, Phase.SWITCHING_OVER]
    names = ["StopWrites", "Restore", "Verify", "SwitchOver"]
    index = path.index(phase)
    steps_ = [found.steps[0].model_copy(update={
        "name": n, "completion_time": NOW if i < index else None})
        for i, n in enumerate(names[:index + 1])]
    return found.model_copy(update={"phase": phase, "steps": steps_})


def _job(condition: str | None) -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True"}] if condition else []
    return {"metadata": {"name": "recovery-verify-x"}, "status": {"conditions": conditions}}


def _deployment(name: str, *, replicas: int = 0, rolled: bool = True,
                pods: int | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "generation": 7},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": 7 if rolled else 6,
                       "replicas": replicas if pods is None else pods}}


def _statefulset(*, ordinal: int, restoring: bool = False, rolled: bool = True,
                 ready: int = 1, replicas: int = 1, pods: int | None = None) -> dict[str, Any]:
    env = [{"name": "STACKFORGE_RESTORE_TARGET", "value": TARGET}] if restoring else []
    return {"metadata": {"name": "postgres", "generation": 4},
            "spec": {"replicas": replicas, "ordinals": {"start": ordinal},
                     "template": {"spec": {"containers": [{"name": "postgres", "env": env}]}}},
            "status": {"observedGeneration": 4 if rolled else 3, "readyReplicas": ready,
                       "replicas": replicas if pods is None else pods,
                       "currentRevision": "postgres-b", "updateRevision": "postgres-b"}}


# --- the request ---------------------------------------------------------------------


def test_no_annotation_asks_nothing() -> None:
    assert _request() is None


@pytest.mark.parametrize("confirm", [
    None, "", "acme", "tenant-acme/acme@2026-12-01T05:41:00Z", f"tenant-other/acme@{TARGET}",
    f"tenant-acme/other@{TARGET}"])
def test_a_request_not_confirmed_for_this_tenant_and_moment_is_refused(
        confirm: str | None) -> None:
    values = {"recover_to": TARGET, **({"recover_confirm": confirm} if confirm is not None
                                       else {})}
    refused = _request(**values)
    assert isinstance(refused, str)
    assert f"stackforge.io/recover-confirm={CONFIRM}" in refused


@pytest.mark.parametrize("target", ["yesterday", "2026-12-01T05:40:00"])
def test_a_target_that_is_not_a_moment_with_a_zone_is_refused(target: str) -> None:
    refused = _request(recover_to=target, recover_confirm=f"tenant-acme/acme@{target}")
    assert isinstance(refused, str) and "not an RFC 3339 time with a zone" in refused


def test_a_confirmed_request_carries_its_moment_and_drill() -> None:
    wanted = _request(recover_to=TARGET, recover_confirm=CONFIRM, recover_verify_drill="nightly")
    assert wanted == recovery.Request(TARGET, datetime(2026, 12, 1, 5, 40, tzinfo=UTC),
                                      "nightly")


def test_a_request_is_answered_once_but_a_refused_one_is_looked_at_again() -> None:
    annotations = _annotations(recover_to=TARGET, recover_confirm=CONFIRM)
    done = _begun().model_copy(update={"phase": Phase.FAILED})
    assert recovery.request(annotations, "tenant-acme", "acme", done, NOW) is None
    refused = recovery.refused(TARGET, "after the window", None, NOW)
    assert isinstance(recovery.request(annotations, "tenant-acme", "acme", refused, NOW),
                      recovery.Request)


def test_only_another_drill_after_a_failure_asks_again_for_an_answered_moment() -> None:
    """A recovery verified with drill "monthly" failed; taking the drill
    annotation off (tidying up) started the recovery again, unverified. And
    after a success, naming a drill restored the moment again, throwing away
    every write since."""
    with_drill = _annotations(recover_to=TARGET, recover_confirm=CONFIRM,
                              recover_verify_drill="monthly")
    wanted = recovery.request(with_drill, "tenant-acme", "acme", None, NOW)
    assert isinstance(wanted, recovery.Request)
    done = recovery.begin(wanted, PhysicalSource(REPOSITORY, TARGET), "archive", None, NOW,
                          fingerprint=archiving_policy.fingerprint(_policy()))
    failed = done.model_copy(update={"phase": Phase.FAILED})
    succeeded = done.model_copy(update={"phase": Phase.SUCCEEDED})

    def asked(answered: RecoveryStatus, **drill: str) -> recovery.Request | str | None:
        again = _annotations(recover_to=TARGET, recover_confirm=CONFIRM, **drill)
        return recovery.request(again, "tenant-acme", "acme", answered, NOW)

    assert asked(failed) is None
    assert asked(failed, recover_verify_drill="monthly") is None
    retried = asked(failed, recover_verify_drill="other")
    assert isinstance(retried, recovery.Request) and retried.verify_drill == "other"
    assert asked(succeeded) is None
    assert asked(succeeded, recover_verify_drill="other") is None
    # The moment written anew (and confirmed so) is a new request.
    anew = "2026-12-01T05:40:00+00:00"
    again = _annotations(recover_to=anew, recover_confirm=f"tenant-acme/acme@{anew}")
    assert isinstance(recovery.request(again, "tenant-acme", "acme", done, NOW),
                      recovery.Request)


def test_a_refused_request_is_looked_at_again_for_a_while_not_for_ever() -> None:
    """Refused while the tenant was suspended, a request left on it restored a
    weeks-old moment, unattended, the day the tenant was resumed."""
    annotations = _annotations(recover_to=TARGET, recover_confirm=CONFIRM)
    first = recovery.refused(TARGET, "the tenant is suspended", None, NOW)
    assert first.asked_time == NOW
    assert "looked at again until 2026-12-01T07:00:00Z" in (first.message or "")
    later = NOW + timedelta(seconds=config.RECOVERY_REQUEST_SECONDS - 1)
    # Refused again within the hour: still counted from when it was first seen.
    again = recovery.refused(TARGET, "outside the window", first, later)
    assert again.asked_time == NOW
    assert isinstance(recovery.request(annotations, "tenant-acme", "acme", again, later),
                      recovery.Request)
    expired = NOW + timedelta(seconds=config.RECOVERY_REQUEST_SECONDS)
    assert recovery.request(annotations, "tenant-acme", "acme", again, expired) is None
    # Taken off and written again: asked anew.
    withdrawn = recovery.withdrawn(again)
    assert withdrawn is not None and withdrawn.asked_time is None
    assert withdrawn.phase == Phase.REFUSED  # what it left (ordinals, volumes) stays
    assert isinstance(recovery.request(annotations, "tenant-acme", "acme", withdrawn, expired),
                      recovery.Request)
    assert recovery.refused(TARGET, "no", withdrawn, expired).asked_time == expired
    # A finished recovery is not touched.
    succeeded = _begun().model_copy(update={"phase": Phase.SUCCEEDED})
    assert recovery.withdrawn(succeeded) is succeeded


def test_a_refused_request_keeps_how_the_last_recovery_that_ran_ended() -> None:
    """A request refused after a failed recovery replaced its record: why it
    failed was lost, and the RecoveryFailed incident was resolved, though the
    refusal started nothing."""
    failed = _begun().model_copy(update={
        "phase": Phase.FAILED, "message": "the verification failed: orders is empty",
        "completion_time": NOW})
    refused = recovery.refused("2026-12-01T05:00:00Z", "outside the window", failed,
                               NOW + timedelta(minutes=5))
    ended = refused.last_ended
    assert ended is not None and ended.phase == Phase.FAILED
    assert (ended.request, ended.message, ended.completion_time) == (
        failed.request, failed.message, NOW)
    assert ended.recovery_target == failed.recovery_target
    # Refused again, and taken off: still kept; a new recovery that starts drops it.
    again = recovery.refused("2026-12-01T04:00:00Z", "no", refused, NOW + timedelta(hours=2))
    assert again.last_ended == ended
    withdrawn = recovery.withdrawn(again)
    assert withdrawn is not None and withdrawn.last_ended == ended
    assert recovery.refused(TARGET, "no", None, NOW).last_ended is None


def test_a_recover_to_too_long_to_record_is_refused_not_an_error() -> None:
    """One over status.recovery.request's 64 characters raised a ValidationError
    at every reconcile: the tenant was not reconciled at all, with no word why."""
    target = f"{TARGET} -- the moment before the bad migration ran, ask Sam"
    wanted = _request(recover_to=target, recover_confirm=f"tenant-acme/acme@{target}")
    assert isinstance(wanted, str) and "longer than 64 characters" in wanted
    recorded = recovery.refused(target, wanted, None, NOW)
    assert recorded.request == target[:64]
    # Refused again at the next pass: the same record, so no status write.
    assert recovery.refused(target, wanted, recorded, NOW + timedelta(minutes=5)) == recorded


def test_a_new_recovery_restores_into_the_next_pod_and_keeps_what_was_kept() -> None:
    first = _begun()
    assert (first.phase, first.previous_ordinal, first.ordinal) == (Phase.STOPPING_WRITES, 0, 1)
    assert first.repository_path == REPOSITORY and first.recovery_target == TARGET
    assert [s.name for s in first.steps] == ["StopWrites"] and first.start_time == NOW
    succeeded = first.model_copy(update={"phase": Phase.SUCCEEDED,
                                         "kept_volumes": ["data-postgres-0"]})
    second = _begun(succeeded)
    assert (second.previous_ordinal, second.ordinal) == (1, 2)
    assert second.kept_volumes == ["data-postgres-0"]
    # After a roll-back the database is pod 0's again, but pod 1's claim is kept:
    # the next restore goes to pod 2, and a refusal between keeps counting.
    failed = first.model_copy(update={"phase": Phase.FAILED,
                                      "kept_volumes": ["data-postgres-1"]})
    assert (_begun(failed).previous_ordinal, _begun(failed).ordinal) == (0, 2)
    refused = recovery.refused(TARGET, "no", failed, NOW)
    assert (refused.previous_ordinal, refused.ordinal, refused.kept_volumes) == (
        0, 1, ["data-postgres-1"])
    assert recovery.primary_ordinal(refused) == 0
    assert (_begun(refused).previous_ordinal, _begun(refused).ordinal) == (0, 2)
    refused_after_success = recovery.refused(TARGET, "no", succeeded, NOW)
    assert (refused_after_success.previous_ordinal, refused_after_success.ordinal) == (1, 1)


@pytest.mark.parametrize(("phase", "ordinal"), [
    (Phase.STOPPING_WRITES, 0), (Phase.RESTORING, 1), (Phase.VERIFYING, 1),
    (Phase.SWITCHING_OVER, 1), (Phase.SUCCEEDED, 1), (Phase.ROLLING_BACK, 0),
    (Phase.FAILED, 0), (Phase.REFUSED, 0)])
def test_the_database_is_the_restored_pods_only_from_the_restore_on(
        phase: RecoveryPhase, ordinal: int) -> None:
    assert recovery.primary_ordinal(_begun().model_copy(update={"phase": phase})) == ordinal
    assert recovery.primary_ordinal(None) == 0


# --- how the tenant is built ---------------------------------------------------------


def _built(phase: RecoveryPhase | None) -> list[dict[str, Any]]:
    t = replace(tenant({"components": {"postgres": {"readReplicas": 2}}}),
                archiving=archiving_policy.archiving([{
                    "metadata": {"name": "archive"},
                    "spec": _policy().model_dump(mode="json", by_alias=True)}]))
    found = _begun().model_copy(update={"phase": phase}) if phase else None
    planned = recovery.with_plan(t, found, _policy())
    return [*postgres.build(planned), *apps.build(planned)]


def _env_names(statefulset: dict[str, Any]) -> set[str]:
    return {e["name"] for c in statefulset["spec"]["template"]["spec"]["containers"]
            for e in c.get("env", [])}


def test_without_a_recovery_the_primary_is_pod_0_and_everything_runs() -> None:
    built = _built(None)
    primary = find(built, "StatefulSet", "postgres")
    assert primary["spec"]["ordinals"] == {"start": 0} and primary["spec"]["replicas"] == 1
    assert find(built, "StatefulSet", "postgres-replica")["spec"]["replicas"] == 2
    assert find(built, "Deployment", "worker")["spec"]["replicas"] == 1


def test_stopping_writes_stops_the_apps_and_the_old_primary() -> None:
    built = _built(Phase.STOPPING_WRITES)
    primary = find(built, "StatefulSet", "postgres")
    assert primary["spec"]["ordinals"] == {"start": 0} and primary["spec"]["replicas"] == 0
    assert find(built, "StatefulSet", "postgres-replica")["spec"]["replicas"] == 0
    # Even the autoscaled app: an HPA never scales up from zero.
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in built
            if d["kind"] == "Deployment"} == {"api": 0, "worker": 0, "web": 0}


@pytest.mark.parametrize("phase", sorted(recovery.ACTIVE))
@pytest.mark.parametrize("change", [{"suspend": True},
                                    {"components": {"postgres": {"enabled": False}}}])
def test_an_active_recovery_holds_the_database_against_suspension_and_switching_it_off(
        phase: RecoveryPhase, change: dict[str, Any]) -> None:
    t = replace(tenant(change), archiving=archiving_policy.archiving([{
        "metadata": {"name": "archive"}, "spec": _policy().model_dump(mode="json",
                                                                      by_alias=True)}]))
    found = _begun().model_copy(update={"phase": phase})
    primary = find(postgres.build(recovery.with_plan(t, found, _policy())),
                   "StatefulSet", "postgres")
    on = phase != Phase.STOPPING_WRITES
    assert primary["spec"]["replicas"] == (1 if on else 0)
    # Once it has ended, the tenant's own spec again.
    ended = found.model_copy(update={"phase": Phase.SUCCEEDED})
    after = postgres.build(recovery.with_plan(t, ended, _policy()))
    assert [m for m in after if m["kind"] == "StatefulSet" and m["metadata"]["name"] == "postgres"
            and m["spec"]["replicas"] > 0] == []


def test_the_app_deployments_waited_for_are_those_the_builders_make() -> None:
    everything = stack.workloads(tenant(ENTERPRISE))
    live = {(m["kind"], m["metadata"]["name"]): m for m in everything}
    # Not the other Deployments of the stack (Kong, the pooler, ...).
    assert {"api", "web", "worker"} < {n for k, n in live if k == "Deployment"}
    assert sorted(d["metadata"]["name"] for d in recovery.app_deployments(live)) == [
        "api", "web", "worker"]


@pytest.mark.parametrize("phase", [Phase.RESTORING, Phase.VERIFYING])
def test_the_restore_runs_in_the_next_pod_with_the_tenants_own_archive(
        phase: RecoveryPhase) -> None:
    built = _built(phase)
    primary = find(built, "StatefulSet", "postgres")
    assert primary["spec"]["ordinals"] == {"start": 1} and primary["spec"]["replicas"] == 1
    server = primary["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") or e.get("valueFrom") for e in server["env"]}
    assert env["STACKFORGE_RESTORE_TARGET"] == TARGET
    assert env["STACKFORGE_RESTORE_REPOSITORY"] == REPOSITORY
    assert env["STACKFORGE_RESTORE_STANZA"] == "acme"
    assert env["STACKFORGE_RESTORE_PGBACKREST_REPO1_CIPHER_PASS"] == {
        "secretKeyRef": {"name": "cipher", "key": "passphrase", "optional": True}}
    # Nothing archived before the switch-over.
    assert not [n for n in env if n.startswith("PGBACKREST_")] and "archiver" not in {
        c["name"] for c in primary["spec"]["template"]["spec"]["containers"]}
    assert find(built, "Deployment", "api")["spec"]["replicas"] == 0


@pytest.mark.parametrize("phase", [Phase.SWITCHING_OVER, Phase.SUCCEEDED])
def test_switching_over_drops_the_restore_and_brings_the_apps_and_replicas_back(
        phase: RecoveryPhase) -> None:
    built = _built(phase)
    primary = find(built, "StatefulSet", "postgres")
    assert primary["spec"]["ordinals"] == {"start": 1} and primary["spec"]["replicas"] == 1
    assert not {n for n in _env_names(primary) if n.startswith("STACKFORGE_RESTORE")}
    assert "archiver" in {c["name"] for c in primary["spec"]["template"]["spec"]["containers"]}
    assert "PGBACKREST_REPO1_S3_BUCKET" in _env_names(primary)
    assert find(built, "Deployment", "worker")["spec"]["replicas"] == 1
    assert find(built, "Deployment", "api")["spec"].get("replicas") is None  # the HPA's
    replicas = find(built, "StatefulSet", "postgres-replica")["spec"]["replicas"]
    assert replicas == 2


def test_rolling_back_runs_the_old_pod_without_the_restore_and_keeps_the_writes_stopped() -> None:
    built = _built(Phase.ROLLING_BACK)
    primary = find(built, "StatefulSet", "postgres")
    assert primary["spec"]["ordinals"] == {"start": 0} and primary["spec"]["replicas"] == 1
    assert not {n for n in _env_names(primary) if n.startswith("STACKFORGE_RESTORE")}
    assert find(built, "Deployment", "worker")["spec"]["replicas"] == 0


def test_the_switch_over_is_built_only_once_the_status_says_so() -> None:
    """Applied before the status is written, apps started by the reconcile that
    saw the verification pass would run while the status still says Verifying."""
    verifying, switching = _in(Phase.VERIFYING), _in(Phase.SWITCHING_OVER)
    assert recovery.plan(verifying, switching) == verifying
    assert recovery.plan(switching, switching) == switching
    succeeded = switching.model_copy(update={"phase": Phase.SUCCEEDED})
    assert recovery.plan(switching, succeeded) == succeeded
    # Steps that stop writes, and the end of a roll-back, take effect at once.
    rolling_back = verifying.model_copy(update={"phase": Phase.ROLLING_BACK})
    failed = verifying.model_copy(update={"phase": Phase.FAILED})
    for before, after in ((None, _begun()), (_begun(), _in(Phase.RESTORING)),
                          (verifying, rolling_back), (rolling_back, failed), (None, None)):
        assert recovery.plan(before, after) == after


# --- the steps -----------------------------------------------------------------------


def test_writes_are_stopped_once_no_app_and_no_old_primary_is_left() -> None:
    begun = _begun()
    waiting = recovery.advance(begun, _facts(_pod("postgres-0"), _pod("api-1", component="app")))
    assert waiting.phase == Phase.STOPPING_WRITES
    assert "api-1, postgres-0" in (waiting.message or "")
    later = NOW + timedelta(seconds=20)
    stopped = _statefulset(ordinal=0, replicas=0, ready=0)
    # No pod seen, but the StatefulSet's controller has not taken the scale to zero
    # in (or still counts a pod): it could make the old primary again.
    for statefulset in (None, _statefulset(ordinal=0, replicas=0, ready=0, rolled=False),
                        _statefulset(ordinal=0, replicas=0, ready=0, pods=1)):
        unconfirmed = recovery.advance(begun, _facts(statefulset=statefulset, at=later))
        assert unconfirmed.phase == Phase.STOPPING_WRITES
        assert "StatefulSet postgres to scale to zero" in (unconfirmed.message or "")
    # The same for an app's Deployment: no app pod seen, but its controller could
    # still make one (a ReplicaSet not yet scaled down replaces a pod gone).
    for deployment in (_deployment("api", replicas=2), _deployment("api", rolled=False),
                       _deployment("api", pods=1)):
        unconfirmed = recovery.advance(begun, _facts(statefulset=stopped, at=later,
                                                     apps=(deployment, _deployment("web"))))
        assert unconfirmed.phase == Phase.STOPPING_WRITES
        assert "Deployment api to scale to zero" in (unconfirmed.message or "")
    moved = recovery.advance(begun, _facts(_pod("redis-0", component="redis"),
                                           statefulset=stopped, at=later,
                                           apps=(_deployment("api"), _deployment("web"))))
    assert moved.phase == Phase.RESTORING
    assert [(s.name, s.completion_time) for s in moved.steps] == [
        ("StopWrites", later), ("Restore", None)]


def test_the_restore_is_done_when_the_new_primary_is_ready_on_the_restores_template() -> None:
    restoring = _in(Phase.RESTORING)
    restore = _statefulset(ordinal=1, restoring=True)
    assert recovery.advance(restoring, _facts(_pod("postgres-1", ready=False),
                                              statefulset=restore)) == restoring
    # Ready, but made from the template before the restore's (it would have made
    # a new database, not restored one), or not yet seen by the controller.
    for pod, statefulset in ((_pod("postgres-1", revision="postgres-a"), restore),
                             (_pod("postgres-1"), _statefulset(ordinal=1, restoring=True,
                                                               rolled=False)),
                             (_pod("postgres-1"), None)):
        assert recovery.advance(restoring, _facts(pod, statefulset=statefulset)) == restoring
    moved = recovery.advance(restoring, _facts(_pod("postgres-1"), statefulset=restore))
    assert moved.phase == Phase.VERIFYING and moved.steps[-1].name == "Verify"


def test_a_restore_that_keeps_failing_rolls_back() -> None:
    restoring = _in(Phase.RESTORING)
    once = _pod("postgres-1", ready=False, restarts=1, exit_code=1)
    assert recovery.advance(restoring, _facts(once)).phase == Phase.RESTORING
    failing = _pod("postgres-1", ready=False, restarts=3, exit_code=1)
    moved = recovery.advance(restoring, _facts(failing))
    assert moved.phase == Phase.ROLLING_BACK
    assert moved.steps[-2].message is not None and "failed 3 times" in moved.steps[-2].message
    assert "kubectl logs postgres-1 -c postgres --previous" in moved.steps[-2].message


def test_a_restore_past_its_deadline_rolls_back() -> None:
    restoring = _in(Phase.RESTORING)
    late = NOW + timedelta(seconds=config.RECOVERY_RESTORE_DEADLINE_SECONDS + 1)
    moved = recovery.advance(restoring, _facts(_pod("postgres-1", ready=False), at=late))
    assert moved.phase == Phase.ROLLING_BACK
    assert "did not finish within" in (moved.message or "")


def test_verification_waits_for_the_job_and_follows_its_result() -> None:
    verifying = _in(Phase.VERIFYING)
    assert recovery.advance(verifying, _facts(job=None)) == verifying
    assert recovery.advance(verifying, _facts(job=_job(None))) == verifying
    passed = recovery.advance(verifying, _facts(
        _pod("recovery-verify-x-abcde", component="recovery",
             labels={"job-name": "recovery-verify-x"},
             message='{"verdict": "Passed", "message": "all 3 checks passed"}'),
        job=_job("Complete")))
    assert passed.phase == Phase.SWITCHING_OVER
    assert passed.steps[-2].message == "verified: all 3 checks passed"
    failed = recovery.advance(verifying, _facts(
        _pod("recovery-verify-x-abcde", component="recovery",
             labels={"job-name": "recovery-verify-x"},
             message='{"verdict": "Failed", "message": "check precious: got 7, want 8"}'),
        job=_job("Failed")))
    assert failed.phase == Phase.ROLLING_BACK
    assert failed.steps[-2].message == (
        "the verification failed: check precious: got 7, want 8")
    gone = recovery.advance(verifying, _facts(job=_job("Failed")))
    assert "kubectl logs job/recovery-verify-x" in (gone.message or "")


def test_a_verification_that_never_ends_rolls_back_at_its_deadline() -> None:
    """A verification Job refused by a quota or an admission policy (never made),
    or one that never ends, kept the apps down for ever."""
    verifying = _in(Phase.VERIFYING)
    deadline = NOW + timedelta(seconds=config.RECOVERY_VERIFY_DEADLINE_SECONDS)
    assert recovery.advance(verifying, _facts(job=None, at=deadline)) == verifying
    late = deadline + timedelta(seconds=1)
    never_made = recovery.advance(verifying, _facts(job=None, at=late))
    assert never_made.phase == Phase.ROLLING_BACK
    assert "did not finish within 3600 s (its Job was never made" in (never_made.message or "")
    hanging = recovery.advance(verifying, _facts(job=_job(None), at=late))
    assert hanging.phase == Phase.ROLLING_BACK
    assert "see Job recovery-verify-x" in (hanging.message or "")


def test_a_restore_whose_policy_goes_rolls_back_before_it_is_verified() -> None:
    """Without the policy's settings the restored pod started as a new, empty
    database, and a verification without queries passed it."""
    for phase in (Phase.STOPPING_WRITES, Phase.RESTORING, Phase.VERIFYING):
        going = _in(phase)
        assert recovery.source_kept(going, _policy(), NOW) == going
        gone = recovery.source_kept(going, None, NOW)
        assert gone is not None and gone.phase == Phase.ROLLING_BACK
        assert "BackupPolicy archive, whose archive this restores, is gone" in (
            gone.message or "")
        dumps_only = _policy().model_copy(update={"continuous_archiving": None})
        stopped = recovery.source_kept(going, dumps_only, NOW)
        assert stopped is not None and "no longer archives" in (stopped.message or "")
        # Nothing of it is built from the restore any more.
        built = recovery.with_plan(tenant(), stopped, dumps_only)
        assert built.restore is None and built.primary_ordinal == 0
    # Verified: the switch-over needs the policy no more, and what ended stays.
    for phase in (Phase.SWITCHING_OVER,):
        assert recovery.source_kept(_in(phase), None, NOW) == _in(phase)
    succeeded = _in(Phase.SWITCHING_OVER).model_copy(update={"phase": Phase.SUCCEEDED})
    assert recovery.source_kept(succeeded, None, NOW) == succeeded
    assert recovery.source_kept(None, None, NOW) is None


def test_a_restore_whose_policy_moves_its_archive_rolls_back_before_it_is_verified() -> None:
    """The policy's bucket edited mid-restore: the primary restarted its restore
    from the same repository path in another bucket (or with another cipher)."""
    moved = _policy().model_copy(deep=True)
    moved.storage.bucket = "backups-2027"
    recipher = _policy().model_copy(deep=True)
    assert recipher.continuous_archiving is not None
    recipher.continuous_archiving.repository_cipher_secret_ref.name = "cipher-2"
    tuned = _policy().model_copy(update={"schedule": "0 3 * * *"})
    # Pinned: an operator upgraded mid-restore must read the same digest (a field a
    # release adds, or how a library writes a URL, must not roll restores back).
    assert archiving_policy.fingerprint(_policy()) == "9fbad4da78a03c7397d426d9efef27cc"
    encrypted = BackupPolicySpec.model_validate({**_policy().model_dump(by_alias=True,
                                                                        exclude_none=True),
                                                 "storage": {**_policy().storage.model_dump(
                                                     by_alias=True, exclude_none=True),
                                                     "serverSideEncryption": {
                                                         "algorithm": "AES256"}}})
    assert archiving_policy.fingerprint(encrypted) == archiving_policy.fingerprint(_policy())
    for phase in (Phase.STOPPING_WRITES, Phase.RESTORING, Phase.VERIFYING):
        going = _in(phase)
        assert going.archive_fingerprint == archiving_policy.fingerprint(_policy())
        assert recovery.source_kept(going, tuned, NOW) == going  # not where it is
        for changed in (moved, recipher):
            back = recovery.source_kept(going, changed, NOW)
            assert back is not None and back.phase == Phase.ROLLING_BACK
            assert "changed its storage or repository cipher" in (back.message or "")
        # A record from before fingerprints: as before, only a policy gone counts.
        unrecorded = going.model_copy(update={"archive_fingerprint": None})
        assert recovery.source_kept(unrecorded, moved, NOW) == unrecorded
    switching = _in(Phase.SWITCHING_OVER)
    assert recovery.source_kept(switching, moved, NOW) == switching


def test_the_switch_over_ends_once_the_primary_runs_without_the_restore() -> None:
    switching = _in(Phase.SWITCHING_OVER)
    for statefulset in (None, _statefulset(ordinal=1, restoring=True),
                        _statefulset(ordinal=1, rolled=False),
                        _statefulset(ordinal=1, ready=0), _statefulset(ordinal=0)):
        assert recovery.advance(switching, _facts(statefulset=statefulset)) == (
            switching)
    later = NOW + timedelta(minutes=3)
    done = recovery.advance(switching, _facts(statefulset=_statefulset(ordinal=1),
                                              at=later))
    assert done.phase == Phase.SUCCEEDED and done.completion_time == later
    assert done.kept_volumes == ["data-postgres-0"]
    assert all(s.completion_time is not None for s in done.steps)
    assert "data-postgres-0 is kept until you delete it" in (done.message or "")


def test_a_roll_back_ends_with_the_old_primary_ready_and_keeps_the_restores_claim() -> None:
    rolling = recovery.roll_back(_in(Phase.VERIFYING), NOW, "the verification failed: no")
    assert rolling.phase == Phase.ROLLING_BACK
    both = recovery.advance(rolling, _facts(_pod("postgres-0"), _pod("postgres-1")))
    assert both.phase == Phase.ROLLING_BACK
    again = recovery.advance(both, _facts(_pod("postgres-1")))
    assert again.message == both.message == (
        "the verification failed: no; waiting for the old primary to be Ready and "
        "postgres-1 to stop")
    not_ready = recovery.advance(rolling, _facts(_pod("postgres-0", ready=False),
                                                 statefulset=_statefulset(ordinal=0)))
    assert not_ready.phase == Phase.ROLLING_BACK
    # The old pod made again from the restore's template (no archiving) is not back yet.
    restores = recovery.advance(rolling, _facts(_pod("postgres-0", revision="postgres-a"),
                                                statefulset=_statefulset(ordinal=0)))
    assert restores.phase == Phase.ROLLING_BACK
    done = recovery.advance(rolling, _facts(_pod("postgres-0"),
                                            statefulset=_statefulset(ordinal=0)))
    assert done.phase == Phase.FAILED and done.kept_volumes == ["data-postgres-1"]
    assert [s.name for s in done.steps] == ["StopWrites", "Restore", "Verify",
                                                     "RollBack"]
    assert (done.message or "").startswith("the verification failed: no; the tenant "
                                                    "runs its old database again")


def test_a_kept_volume_is_forgotten_once_deleted() -> None:
    kept = _begun().model_copy(update={"phase": Phase.SUCCEEDED,
                                       "kept_volumes": ["data-postgres-1", "data-postgres-0"]})
    assert recovery.forget_deleted(kept, {"data-postgres-0", "data-postgres-1",
                                          "data-postgres-2"}) == kept
    forgot = recovery.forget_deleted(kept, {"data-postgres-1", "data-postgres-2"})
    assert forgot is not None and forgot.kept_volumes == ["data-postgres-1"]
    assert recovery.forget_deleted(None, set()) is None


def test_events_say_each_phase_once() -> None:
    begun = _begun()
    assert recovery.events(None, begun) == [("Normal", "RecoveryStarted",
                                             "stopping the apps and the primary")]
    assert recovery.events(begun, begun.model_copy(update={"message": "waiting"})) == []
    failed = begun.model_copy(update={"phase": Phase.FAILED, "message": "no"})
    assert recovery.events(begun, failed) == [("Warning", "RecoveryFailed", "no")]
    assert recovery.events(begun, None) == []


def _quota(hard: str | None, used: str, name: str = "tenant-quota") -> dict[str, Any]:
    limits = {"requests.cpu": "4"} if hard is None else {"requests.storage": hard}
    return {"metadata": {"name": name},
            "status": {"hard": limits, "used": {"requests.storage": used}}}


def test_a_recovery_without_room_for_its_volume_is_refused_before_anything_stops() -> None:
    """The restore's claim refused by the quota: no restore pod, and the apps
    stopped until the 2 h deadline rolled it back."""
    assert recovery.storage_shortfall([], "50Gi") is None
    assert recovery.storage_shortfall([_quota("100Gi", "50Gi")], "50Gi") is None
    assert recovery.storage_shortfall([_quota(None, "90Gi")], "50Gi") is None
    short = recovery.storage_shortfall([_quota("100Gi", "50Gi"), _quota("100Gi", "51Gi", "team")],
                                       "50Gi")
    assert short is not None
    assert "ResourceQuota team leaves 49.0Gi of requests.storage (51Gi of 100Gi used" in short
    over = recovery.storage_shortfall([_quota("10Gi", "12Gi")], "1Gi")
    assert over is not None and "leaves 0.0Gi" in over
    assert recovery.storage_shortfall([_quota("lots", "12Gi")], "1Gi") is None


def test_a_recovery_refused_by_a_claim_count_or_a_class_quota_is_refused_first() -> None:
    """Only requests.storage was checked: a quota on the number of claims, or on a
    storage class, refused the restore's claim as surely, with the apps stopped."""
    def quota(hard: dict[str, str], used: dict[str, str]) -> dict[str, Any]:
        return {"metadata": {"name": "tenant-quota"}, "status": {"hard": hard, "used": used}}

    count = quota({"persistentvolumeclaims": "4"}, {"persistentvolumeclaims": "4"})
    short = recovery.storage_shortfall([count], "50Gi")
    assert short is not None and "the restore needs a new claim" in short
    assert "leaves 0 of persistentvolumeclaims (4 of 4 used" in short
    assert recovery.storage_shortfall(
        [quota({"persistentvolumeclaims": "5"}, {"persistentvolumeclaims": "4"})], "50Gi") is None
    fast = "fast.storageclass.storage.k8s.io/requests.storage"
    scoped = quota({fast: "100Gi"}, {fast: "60Gi"})
    short = recovery.storage_shortfall([scoped], "50Gi", "fast")
    assert short is not None and f"leaves 40.0Gi of {fast}" in short
    # Another class's quota, or the default class (not known here), is not this claim's.
    assert recovery.storage_shortfall([scoped], "50Gi", "slow") is None
    assert recovery.storage_shortfall([scoped], "50Gi") is None


def test_a_recovery_that_would_keep_more_volumes_than_are_listed_is_refused() -> None:
    """The 17th kept claim would push the oldest out of the list, its data kept
    and found by nobody."""
    assert recovery.kept_volumes_full(None) is None
    claims = [f"data-postgres-{n}" for n in range(KEPT_VOLUMES_MAX)]
    ended = _begun().model_copy(update={"phase": Phase.SUCCEEDED,
                                        "kept_volumes": claims[:-1]})
    assert recovery.kept_volumes_full(ended) is None
    full = recovery.kept_volumes_full(ended.model_copy(update={"kept_volumes": claims}))
    assert full is not None and full.startswith(
        "16 volumes of earlier recoveries are kept (data-postgres-0, data-postgres-1, ")
    assert "delete those you no longer need" in full and "nothing was stopped" in full


def test_writes_that_never_stop_roll_back_at_a_deadline() -> None:
    """The old primary stuck terminating on a lost node: StoppingWrites, with the
    apps down, for ever."""
    begun = _begun()
    stuck = _facts(_pod("postgres-0"), at=NOW + timedelta(
        seconds=config.RECOVERY_STOP_DEADLINE_SECONDS))
    assert recovery.advance(begun, stuck).phase == Phase.STOPPING_WRITES
    late = _facts(_pod("postgres-0"), at=NOW + timedelta(
        seconds=config.RECOVERY_STOP_DEADLINE_SECONDS + 1))
    rolled = recovery.advance(begun, late)
    assert rolled.phase == Phase.ROLLING_BACK
    assert "did not stop within 900 s (still waiting for postgres-0 to stop)" in (
        rolled.message or "")


def test_a_roll_back_whose_old_primary_never_comes_back_ends_failed_at_a_deadline() -> None:
    """RollingBack for ever held the apps at zero and the tenant in its recovery
    (no suspension, no new recovery)."""
    rolling = recovery.roll_back(_in(Phase.VERIFYING), NOW, "the verification failed: no")
    deadline = NOW + timedelta(seconds=config.RECOVERY_ROLL_BACK_DEADLINE_SECONDS)
    not_ready = _pod("postgres-0", ready=False)
    assert recovery.advance(rolling, _facts(not_ready, at=deadline)).phase == (
        Phase.ROLLING_BACK)
    ended = recovery.advance(rolling, _facts(not_ready, at=deadline + timedelta(seconds=1)))
    assert ended.phase == Phase.FAILED and not recovery.active(ended)
    assert "the old primary postgres-0 was not Ready within 1800 s" in (ended.message or "")
    assert ended.kept_volumes == ["data-postgres-1"]
    assert recovery.with_plan(tenant(), ended, _policy()).writes_stopped is False


def _claim(ordinal: int, mark: str | None = None, request: str | None = None, *,
           going: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"data-postgres-{ordinal}", "annotations": {}}
    if mark is not None:
        meta["annotations"][recovery.SERVING_ANNOTATION] = mark
    if request is not None:
        meta["annotations"][recovery.REQUEST_MARK_ANNOTATION] = request
    if going:
        meta["deletionTimestamp"] = "2026-12-01T06:00:00Z"
    return {"metadata": meta}


def test_a_recovery_that_ends_marks_the_claim_its_database_is_on() -> None:
    """Claims outlive the tenant; only its status said which one is the database."""
    begun = _begun()
    # The mark is the start as the status writes it, and the request answered.
    marks = {recovery.SERVING_ANNOTATION: begun.model_dump(mode="json", by_alias=True)[
        "startTime"], recovery.REQUEST_MARK_ANNOTATION: TARGET}
    succeeded = begun.model_copy(update={"phase": Phase.SUCCEEDED, "completion_time": NOW})
    assert recovery.serving_claim(begun, succeeded) == ("data-postgres-1", marks)
    failed = begun.model_copy(update={"phase": Phase.FAILED, "completion_time": NOW})
    assert recovery.serving_claim(begun, failed) == ("data-postgres-0", marks)
    # Once, when it ends; not for a step, a refusal or an adoption.
    assert recovery.serving_claim(succeeded, succeeded) is None
    restoring = begun.model_copy(update={"phase": Phase.RESTORING})
    assert recovery.serving_claim(begun, restoring) is None
    # The apps write to the restored claim from the switch-over on: marked then
    # (a tenant made again meanwhile adopted an earlier recovery's claim), and
    # marked alike when it ends.
    switching = begun.model_copy(update={"phase": Phase.SWITCHING_OVER})
    verifying = begun.model_copy(update={"phase": Phase.VERIFYING})
    assert recovery.serving_claim(verifying, switching) == ("data-postgres-1", marks)
    assert recovery.serving_claim(switching, switching) is None
    assert recovery.serving_claim(switching, succeeded) == ("data-postgres-1", marks)
    assert recovery.serving_claim(None, recovery.refused(TARGET, "no", None, NOW)) is None
    # The pass that ended it died before marking (or it ended before claims were
    # marked): a later pass marks it, once.
    claims = [_claim(0), _claim(1)]
    assert recovery.unmarked_claim(succeeded, claims) == ("data-postgres-1", marks)
    assert recovery.unmarked_claim(succeeded, [_claim(0), _claim(1, "2026-12-01T06:00:00Z")]) \
        is None
    assert recovery.unmarked_claim(failed, claims) == ("data-postgres-0", marks)
    assert recovery.unmarked_claim(restoring, claims) is None
    assert recovery.unmarked_claim(succeeded, [_claim(0)]) is None  # deleted by a person


def test_a_tenant_made_again_over_a_recoverys_claims_adopts_its_database() -> None:
    """Made again in place (a GitOps sync) after a recovery, the tenant started
    postgres-0 on the database as it was before the recovery, as if current."""
    assert recovery.adopted([], NOW) is None  # a new tenant
    assert recovery.adopted([_claim(0), _claim(4, going=True)], NOW) is None
    assert recovery.adopted([{"metadata": {"name": "data-postgres-replica-1"}}], NOW) is None
    # The newest mark, compared as times: the last recovery that ended (here
    # rolled back onto 1); a mark that is no time counts as none.
    found = recovery.adopted([_claim(0), _claim(1, "2026-12-01T06:00:00.250+00:00", TARGET),
                              _claim(2, "2026-12-01T05:59:59Z"), _claim(3, "yesterday")], NOW)
    assert isinstance(found, RecoveryStatus) and found.phase == Phase.ADOPTED
    assert recovery.primary_ordinal(found) == 1 and found.request == TARGET
    assert found.kept_volumes == ["data-postgres-0", "data-postgres-2", "data-postgres-3"]
    # The next recovery starts above every claim found.
    assert _begun(found).ordinal == 4 and _begun(found).previous_ordinal == 1
    # Its old database deleted, the one claim left is the database.
    only = recovery.adopted([_claim(2)], NOW)
    assert isinstance(only, RecoveryStatus) and recovery.primary_ordinal(only) == 2
    assert only.kept_volumes == [] and only.request == ""
    # Several unmarked (a recovery ended before claims were marked): no guess.
    doubt = recovery.adopted([_claim(0), _claim(1)], NOW)
    assert isinstance(doubt, str) and "data-postgres-0, data-postgres-1" in doubt
    assert recovery.SERVING_ANNOTATION in doubt
    # Its own StatefulSet at pod number 1 but no record (the adoption's status
    # write lost): adopted again, never moved back to 0.
    again = recovery.adopted([_claim(0), _claim(1, "2026-12-01T06:00:00Z")], NOW, started_at=1)
    assert isinstance(again, RecoveryStatus) and recovery.primary_ordinal(again) == 1
    assert isinstance(recovery.adopted([_claim(0), _claim(1)], NOW, started_at=1), str)
    # The moment the marked recovery answered is answered; another is a new request.
    annotations = _annotations(recover_to=TARGET, recover_confirm=CONFIRM)
    assert recovery.request(annotations, "tenant-acme", "acme", found, NOW) is None
    assert isinstance(recovery.request(annotations, "tenant-acme", "acme", only, NOW),
                      recovery.Request)
    assert recovery.events(None, found)[0][1] == "DatabaseAdopted"


def test_a_moment_answered_before_a_refusal_is_not_restored_again() -> None:
    """Recovered to X, then a typo refused (replacing the record), then X written
    back with its confirmation still there: X was restored again, and every write
    since the recovery thrown away."""
    annotations = _annotations(recover_to=TARGET, recover_confirm=CONFIRM)
    succeeded = _begun().model_copy(update={"phase": Phase.SUCCEEDED, "completion_time": NOW})
    typo = recovery.refused("2026-12-01T05:4O:00Z", "not a time", succeeded, NOW)
    assert recovery.request(annotations, "tenant-acme", "acme", typo, NOW) is None
    # After a failure, another drill to verify with still asks again; none does not.
    failed = _begun().model_copy(update={"phase": Phase.FAILED, "completion_time": NOW,
                                         "verify_drill": "monthly"})
    typo = recovery.refused("2026-12-01T05:4O:00Z", "not a time", failed, NOW)
    assert recovery.request(annotations, "tenant-acme", "acme", typo, NOW) is None
    other = _annotations(recover_to=TARGET, recover_confirm=CONFIRM,
                         recover_verify_drill="weekly")
    assert isinstance(recovery.request(other, "tenant-acme", "acme", typo, NOW),
                      recovery.Request)


def test_a_roll_back_past_its_deadline_holds_the_apps_while_the_restored_pod_runs() -> None:
    """The postgres Service selects every primary pod: ended at the deadline with
    the restored pod still Ready (the StatefulSet deletes it only once the old
    primary is Ready), the apps came back and wrote to the database that failed
    its verification."""
    rolling = recovery.roll_back(_in(Phase.VERIFYING), NOW, "the verification failed: no")
    late = NOW + timedelta(seconds=config.RECOVERY_ROLL_BACK_DEADLINE_SECONDS + 1)
    both = _facts(_pod("postgres-0", ready=False), _pod("postgres-1"), at=late)
    held = recovery.advance(rolling, both)
    assert held.phase == Phase.ROLLING_BACK and recovery.active(held)
    assert recovery.with_plan(tenant(), held, _policy()).writes_stopped is True
    assert "postgres-1 (the restored database) still runs, so the apps stay stopped" in (
        held.message or "")
    assert "delete pod postgres-1 (its volume data-postgres-1 is kept)" in (held.message or "")
    # Once it is gone, the deadline ends it as before.
    ended = recovery.advance(held, _facts(_pod("postgres-0", ready=False), at=late))
    assert ended.phase == Phase.FAILED
    assert recovery.with_plan(tenant(), ended, _policy()).writes_stopped is False


def test_a_switch_over_that_does_not_end_says_so_and_is_not_rolled_back() -> None:
    """Verified and switched, the primary restarted without the restore never came
    back: the recovery held the tenant (no suspension, no other recovery) for
    ever, saying only that it was switching over."""
    switching = _in(Phase.SWITCHING_OVER)
    soon = NOW + timedelta(seconds=config.RECOVERY_SWITCH_OVER_WARNING_SECONDS)
    assert recovery.advance(switching, _facts(at=soon)) == switching
    late = recovery.advance(switching, _facts(at=soon + timedelta(seconds=1)))
    assert late.phase == Phase.SWITCHING_OVER  # the apps write there: nothing to go back to
    assert "the primary postgres-1 has not come back without the restore's settings " \
           "within 900 s: look at that pod" in (late.message or "")
    # Once it serves, it ends as ever.
    done = recovery.advance(late, _facts(statefulset=_statefulset(ordinal=1),
                                         at=soon + timedelta(seconds=2)))
    assert done.phase == Phase.SUCCEEDED
