"""BackupFresh of a tenant with suspend windows: the newest backup's age counts
only the time its database ran (reconcile/backup.py's conditions, no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stackforge_operator.backup.manifest import Manifest
from stackforge_operator.models.backup import BackupPolicyStatus
from stackforge_operator.reconcile import backup

CREATED = datetime(2026, 11, 1, tzinfo=UTC)
FINISHED = datetime(2026, 12, 4, 6, 5, tzinfo=UTC)  # Friday, after the night's run
NOW = datetime(2026, 12, 7, 6, tzinfo=UTC)  # Monday, as the weekend window closes


def _fresh(stopped: timedelta) -> dict[str, str]:
    newest = Manifest(tenant="acme", run_id="r1", bucket="b", prefix="backups/acme/r1",
                      started_at=FINISHED - timedelta(minutes=1), finished_at=FINISHED,
                      artifacts=[])
    body = {"metadata": {"name": "nightly", "namespace": "tenant-acme",
                         "creationTimestamp": CREATED.isoformat().replace("+00:00", "Z")}}
    conditions = backup._conditions(BackupPolicyStatus(), 1, NOW, "0 2 * * *", "Europe/Berlin",
                                    None, newest, body, [], None, [], None, stopped)
    [found] = [c for c in conditions if c.type == "BackupFresh"]
    return {"status": found.status.value, "reason": found.reason, "message": found.message}


def test_a_weekend_suspended_is_not_counted_against_the_newest_backup() -> None:
    stale = _fresh(timedelta(0))
    assert (stale["status"], stale["reason"]) == ("False", "Stale")  # 72 h against 26 h
    fresh = _fresh(timedelta(hours=59))
    assert (fresh["status"], fresh["reason"]) == ("True", "Fresh")
    assert "12.9h old in running time (2.5d suspended since)" in fresh["message"]
