"""Which backups running restores read: what retention and expiry leave be.

(The policy's pass with them against the API server:
tests/cluster/test_backup_policy.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stackforge_operator.backup.manifest import Manifest, ManifestArtifact
from stackforge_operator.builders import archiving
from stackforge_operator.models.backup import PhysicalBackup, PhysicalBackupType
from stackforge_operator.reconcile import restore_holds
from stackforge_operator.reconcile.restore_holds import Restore

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
REPOSITORY = "/backups/_pgbackrest/acme/7400000000000000001-20261129T000000Z"


def _drill(name: str, run: dict[str, Any] | None, *, tenant: str = "acme",
           namespace: str = "shop", policy: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"tenantRef": {"name": tenant}}
    if policy is not None:
        spec["backupPolicyRef"] = {"name": policy}
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec,
            "status": {"activeRun": run} if run else {}}


def _run(step: str = "Restoring", **fields: str) -> dict[str, Any]:
    return {"runId": "20261207T025000Z", "startTime": "2026-12-07T02:50:00Z", "step": step,
            **fields}


def _tenant(name: str, **status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "lab"}, "status": status}


def test_the_logical_restores_are_the_runs_and_bootstraps_of_the_tenants_dumps() -> None:
    drills = [
        _drill("nightly", _run(backupId="latest")),
        _drill("named", _run(backupId="20261206T020000Z-abcdef"), policy="dumps"),
        _drill("verifying", _run("Verifying", backupId="latest")),  # read it already
        _drill("physical", _run(repositoryPath=REPOSITORY, recoveryTarget="latest")),
        _drill("other-tenant", _run(backupId="latest"), tenant="zeta"),
        _drill("other-policy", _run(backupId="latest"), policy="hourly"),
        _drill("elsewhere", _run(backupId="latest"), namespace="lab"),
        _drill("idle", None),
    ]
    bootstrap = {"method": "Logical", "sourceTenant": "acme", "sourceNamespace": "shop",
                 "backupPolicy": "dumps", "backup": "before=2026-12-05T00:00:00Z",
                 "startTime": "2026-12-07T02:55:00Z"}
    tenants = [
        _tenant("copy", bootstrap=bootstrap),
        _tenant("done", bootstrap={**bootstrap, "completionTime": "2026-12-07T02:58:00Z"}),
        _tenant("other", bootstrap={**bootstrap, "backupPolicy": "hourly"}),
        _tenant("plain"),
    ]
    found = restore_holds.logical_restores("acme", "shop", "dumps", drills, tenants)
    assert found == [
        Restore("DRDrill shop/nightly", datetime(2026, 12, 7, 2, 50, tzinfo=UTC),
                choice="latest"),
        Restore("DRDrill shop/named", datetime(2026, 12, 7, 2, 50, tzinfo=UTC),
                choice="20261206T020000Z-abcdef"),
        Restore("StackForgeTenant lab/copy (spec.bootstrap)",
                datetime(2026, 12, 7, 2, 55, tzinfo=UTC), choice="before=2026-12-05T00:00:00Z"),
    ]


def test_the_physical_restores_are_those_of_the_repository_until_they_have_read_it() -> None:
    target = "2026-12-06T12:00:00Z"
    drills = [
        _drill("pitr", _run(repositoryPath=REPOSITORY, recoveryTarget=target)),
        _drill("starting", _run("CreatingSandbox", repositoryPath=REPOSITORY,
                                recoveryTarget="latest")),
        _drill("verifying", _run("Verifying", repositoryPath=REPOSITORY,
                                 recoveryTarget="latest")),
        _drill("older-incarnation", _run(repositoryPath=REPOSITORY + "x",
                                         recoveryTarget="latest")),
        _drill("logical", _run(backupId="latest")),
    ]
    clone = {"method": "Physical", "sourceTenant": "acme", "sourceNamespace": "shop",
             "backupPolicy": "nightly", "repositoryPath": REPOSITORY,
             "recoveryTarget": "latest", "startTime": "2026-12-07T01:00:00Z"}
    recovery = {"request": "2026-12-06T12:00:00Z", "phase": "Restoring",
                "repositoryPath": REPOSITORY, "recoveryTarget": target,
                "startTime": "2026-12-07T02:00:00Z"}
    tenants = [
        _tenant("clone", bootstrap=clone),
        _tenant("cloned", bootstrap={**clone, "completionTime": "2026-12-07T01:30:00Z"}),
        _tenant("acme", recovery=recovery),
        _tenant("switched", recovery={**recovery, "phase": "SwitchingOver"}),
    ]
    found = restore_holds.physical_restores(REPOSITORY, drills, tenants)
    moment = datetime(2026, 12, 6, 12, tzinfo=UTC)
    assert found == [
        Restore("DRDrill shop/pitr", datetime(2026, 12, 7, 2, 50, tzinfo=UTC), target=moment),
        Restore("DRDrill shop/starting", datetime(2026, 12, 7, 2, 50, tzinfo=UTC)),
        Restore("StackForgeTenant lab/clone (spec.bootstrap)",
                datetime(2026, 12, 7, 1, 0, tzinfo=UTC)),
        Restore("StackForgeTenant lab/acme (in-place recovery)",
                datetime(2026, 12, 7, 2, 0, tzinfo=UTC), target=moment),
    ]
    # A restore that never ends holds for the deadline, no longer.
    assert restore_holds.lasting(found, NOW, timedelta(hours=1.5)) == [found[0], found[1],
                                                                        found[3]]


def test_a_dump_bootstrap_holds_what_it_asked_for_and_what_an_attempt_chose() -> None:
    """A failed attempt records the dump it chose; the next chooses again."""
    bootstrap = {"method": "Logical", "sourceTenant": "acme", "sourceNamespace": "shop",
                 "backupPolicy": "dumps", "backup": "latest",
                 "backupId": "20261206T020000Z-abcdef", "startTime": "2026-12-07T02:55:00Z"}
    found = restore_holds.logical_restores("acme", "shop", "dumps", [],
                                           [_tenant("copy", bootstrap=bootstrap)])
    assert [r.choice for r in found] == ["latest", "20261206T020000Z-abcdef"]


def _dump(started: datetime, minutes: int = 10, *, dump: bool = True) -> Manifest:
    run_id = started.strftime("%Y%m%dT%H%M%SZ") + "-aaaaaa"
    artifacts = [ManifestArtifact(name="postgres", key=f"p/{run_id}/postgres.dump",
                                  size_bytes=10, sha256="d" * 64)] if dump else []
    return Manifest(tenant="acme", run_id=run_id, bucket="b", prefix=f"p/{run_id}",
                    started_at=started, finished_at=started + timedelta(minutes=minutes),
                    artifacts=artifacts)


def test_the_dumps_held_are_those_the_drill_runner_would_choose() -> None:
    day = timedelta(days=1)
    dumps = [_dump(NOW - 4 * day), _dump(NOW - 3 * day), _dump(NOW - 2 * day),
             _dump(NOW - day - timedelta(minutes=5), dump=False),  # configuration only
             _dump(NOW - timedelta(minutes=20))]  # complete at NOW - 10 min

    def held(choice: str, started: datetime = NOW - timedelta(hours=1)) -> set[str]:
        return restore_holds.held_dumps([Restore("DRDrill shop/x", started, choice=choice)],
                                        dumps)

    # The newest dump when the run began, and any complete since (it may have looked later).
    assert held("latest") == {dumps[2].run_id, dumps[4].run_id}
    assert held("latest", NOW) == {dumps[4].run_id}
    # A dump complete by the moment: one that began before it and ended after does not count.
    assert held("before=" + (NOW - 3 * day + timedelta(minutes=5)).isoformat()) == {
        dumps[0].run_id}
    assert held("20261201T000000Z-abcdef") == {"20261201T000000Z-abcdef"}
    assert held("not a choice") == set()
    assert held("before=" + (NOW - 10 * day).isoformat()) == set()


def test_only_restores_whose_full_backup_the_expiry_removes_are_endangered() -> None:
    week = timedelta(days=7)
    first = PhysicalBackup(label="20261123-010000F", type=PhysicalBackupType.FULL,
                           stop_time=NOW - 2 * week)
    second = PhysicalBackup(label="20261130-010000F", type=PhysicalBackupType.FULL,
                            stop_time=NOW - week)
    into_first = Restore("DRDrill shop/old", NOW, target=NOW - week - timedelta(days=1))
    latest = Restore("DRDrill shop/new", NOW)
    request = archiving.BackupRequest(NOW, PhysicalBackupType.FULL, "count", 2)
    assert restore_holds.endangered([into_first, latest], request, [first, second], NOW) == [
        (into_first, first)]
    # A restore of the latest begun before the second full backup reads the
    # first: a third one's expiry removes it, though the newest is the second.
    earlier = Restore("DRDrill shop/slow", NOW - week - timedelta(hours=1))
    assert restore_holds.endangered([earlier], request, [first, second], NOW) == [
        (earlier, first)]


def test_restores_hold_the_backup_for_the_deadline_in_all_then_it_is_asked() -> None:
    limit = timedelta(hours=6)
    why = "the full backup due is asked for once DRDrill shop/x has restored ..."
    first = restore_holds.hold(why, None, NOW, limit)
    assert first == restore_holds.Hold(why, NOW)
    # Another restore after the first: the count goes on from the first hold.
    later = NOW + timedelta(hours=5)
    assert restore_holds.hold("another", first.since, later, limit) == restore_holds.Hold(
        "another", NOW)
    overran = restore_holds.hold("another", first.since, NOW + limit + timedelta(seconds=1),
                                 limit)
    assert overran == restore_holds.Hold(None, NOW, overran=True)
    # Nothing in the way: asked, and the next hold counts afresh.
    assert restore_holds.hold(None, first.since, later, limit) == restore_holds.Hold(None, None)
