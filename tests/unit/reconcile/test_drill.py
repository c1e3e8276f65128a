"""When a DRDrill's next scheduled run is due (reconcile/drill.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stackforge_operator import status
from stackforge_operator.models.drill import DRDrillSpec, DRDrillStatus, DrillResult, Verdict
from stackforge_operator.reconcile import drill
from tests.unit.builders.tenants import tenant


def test_a_schedule_in_the_hour_the_clocks_repeat_runs_once() -> None:
    """New York goes back from 02:00 EDT to 01:00 EST on 2026-11-01: 01:30 comes
    twice (05:30 and 06:30 UTC). A second full restore ran an hour after the first."""
    spec = DRDrillSpec.model_validate({"tenantRef": {"name": "acme"},
                                       "schedule": "30 1 * * 0",
                                       "timeZone": "America/New_York"})
    started = datetime(2026, 11, 1, 5, 30, 2, tzinfo=UTC)
    old = DRDrillStatus(last_result=DrillResult(run_id="r1", verdict=Verdict.PASSED,
                                                start_time=started))
    assert not drill._due(spec, tenant(), old, started + timedelta(hours=1, minutes=1))
    a_week_on = datetime(2026, 11, 8, 6, 30, 5, tzinfo=UTC)  # 01:30 EST
    assert drill._due(spec, tenant(), old, a_week_on)
    assert not drill._due(spec, tenant(), old, a_week_on - timedelta(minutes=1))


def _scratch_pod(**server: object) -> dict[str, object]:
    return {"metadata": {"name": "scratch-postgres-0"},
            "status": {"containerStatuses": [
                {"name": "upkeep", "ready": False, "state": {"running": {}}},
                {"name": "postgres", "ready": False, **server}]}}


def test_a_scratch_server_that_stopped_with_an_error_ends_the_run_with_its_log() -> None:
    failed = drill.scratch_failure(_scratch_pod(
        state={"waiting": {"reason": "CrashLoopBackOff"}}, restartCount=1,
        lastState={"terminated": {"exitCode": 1, "reason": "Error",
                                  "message": "ERROR: [055]: unable to load info file"}}))
    assert failed is not None
    assert (failed["verdict"], failed["reason"]) == ("Failed", "ScratchDatabaseFailed")
    assert "exit code 1" in failed["message"]
    assert failed["restoreLogTail"] == "ERROR: [055]: unable to load info file"
    # Killed out of memory, before any restart.
    oom = drill.scratch_failure(_scratch_pod(
        state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))
    assert oom is not None and "OOMKilled, exit code 137" in oom["message"]
    # An image name that is no image's never runs.
    invalid = drill.scratch_failure(_scratch_pod(
        state={"waiting": {"reason": "InvalidImageName", "message": "bad ref"}}))
    assert invalid is not None and "InvalidImageName" in invalid["message"]


def test_a_scratch_database_starting_restoring_or_waiting_for_a_node_is_waited_for() -> None:
    assert drill.scratch_failure(None) is None
    assert drill.scratch_failure(_scratch_pod(state={"running": {}})) is None
    assert drill.scratch_failure(_scratch_pod(
        state={"waiting": {"reason": "ContainerCreating"}})) is None
    # A pull that failed (a registry's timeout, a rate limit) may pass next time.
    for reason in ("ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError"):
        assert drill.scratch_failure(_scratch_pod(
            state={"waiting": {"reason": reason, "message": "try again"}})) is None
    unscheduled = {"metadata": {"name": "scratch-postgres-0"}, "status": {"conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}}
    assert drill.scratch_failure(unscheduled) is None


def test_a_run_ending_while_the_drill_is_stalled_keeps_the_conditions_transition_times(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The stall was merged over the run's own rollup: Ready flipped True then False
    again in one pass, and its lastTransitionTime (and Stalled's) moved to now
    though the drill had been stalled all along."""
    since = datetime(2026, 12, 1, tzinfo=UTC)
    now = since + timedelta(hours=2)
    stalled_since = [{"type": t, "status": s, "reason": "MissingSecret", "message": "gone",
                      "lastTransitionTime": since.isoformat()}
                     for t, s in (("Ready", "False"), ("Stalled", "True"),
                                  ("Reconciling", "False"))]
    old = DRDrillStatus.model_validate({
        "conditions": stalled_since,
        "activeRun": {"runId": "r1", "startTime": (now - timedelta(minutes=5)).isoformat(),
                      "step": "Verifying", "sandboxNamespace": "drill-sandbox"}})
    spec = DRDrillSpec.model_validate({"tenantRef": {"name": "acme"}})

    def passed(_body: object, _spec: object, new: DRDrillStatus, _job: object,
               at: datetime) -> None:
        new.last_result = DrillResult(run_id="r1", verdict=Verdict.PASSED, start_time=at)
        new.active_run = None

    written: list[DRDrillStatus] = []
    monkeypatch.setattr(drill, "_sweep", lambda *_: None)
    monkeypatch.setattr("stackforge_operator.kube.get", lambda *_: {"status": {"succeeded": 1}})
    monkeypatch.setattr(drill, "job_ended", lambda _job: True)
    monkeypatch.setattr(drill, "_follow_job", passed)
    def write(_body: object, _old: object, new: DRDrillStatus) -> None:
        written.append(new)

    monkeypatch.setattr(drill, "_write", write)
    monkeypatch.setattr(drill, "_remove_ended_sandbox", lambda *_: None)
    body = {"metadata": {"name": "d", "namespace": "ns", "generation": 3}}
    drill._stalled_run(body, spec, old, now, status.Problem("MissingSecret", "gone"))
    [new] = written
    by_type = {c.type: c for c in new.conditions}
    assert by_type["Ready"].status == "False" and by_type["Stalled"].status == "True"
    assert by_type["Ready"].last_transition_time == since
    assert by_type["Stalled"].last_transition_time == since
    assert by_type["LastDrillPassed"].status == "True"
