"""BackupFresh of a tenant with suspend windows: the newest backup's age counts
only the time its database ran (reconcile/backup.py's conditions, no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stackforge_operator.backup.manifest import Manifest
from stackforge_operator.models.backup import BackupPolicyStatus
from stackforge_operator.models.tenant import SuspendWindow
from stackforge_operator.reconcile import backup

CREATED = datetime(2026, 11, 1, tzinfo=UTC)
FINISHED = datetime(2026, 12, 4, 6, 5, tzinfo=UTC)  # Friday, after the night's run
NOW = datetime(2026, 12, 7, 6, tzinfo=UTC)  # Monday, as the weekend window closes


def _fresh(stopped: timedelta, *, now: datetime = NOW, when: str = "0 2 * * *",
           finished: datetime | None = FINISHED,
           took: timedelta = timedelta(minutes=1)) -> dict[str, str]:
    newest = None if finished is None else Manifest(
        tenant="acme", run_id="r1", bucket="b", prefix="backups/acme/r1",
        started_at=finished - took, finished_at=finished, artifacts=[])
    body = {"metadata": {"name": "nightly", "namespace": "tenant-acme",
                         "creationTimestamp": CREATED.isoformat().replace("+00:00", "Z")}}
    conditions = backup._conditions(BackupPolicyStatus(), 1, now, when, "Europe/Berlin",
                                    None, newest, body, [], None, [], None, stopped)
    [found] = [c for c in conditions if c.type == "BackupFresh"]
    return {"status": found.status.value, "reason": found.reason, "message": found.message}


def test_a_weekend_suspended_is_not_counted_against_the_newest_backup() -> None:
    stale = _fresh(timedelta(0))
    assert (stale["status"], stale["reason"]) == ("False", "Stale")  # 72 h against 26 h
    fresh = _fresh(timedelta(hours=59))
    assert (fresh["status"], fresh["reason"]) == ("True", "Fresh")
    assert "12.9h old in running time (2.5d suspended since)" in fresh["message"]


def test_a_weekday_schedules_friday_backup_is_fresh_until_mondays_run_is_late() -> None:
    friday = datetime(2026, 12, 4, 1, 10, tzinfo=UTC)  # 02:10 in Berlin
    saturday = datetime(2026, 12, 5, 3, 20, tzinfo=UTC)  # 26 h 10 min later
    assert _fresh(timedelta(0), now=saturday, when="0 2 * * 1-5", finished=friday)[
        "reason"] == "Fresh"
    monday_late = datetime(2026, 12, 7, 3, 30, tzinfo=UTC)  # 04:30 in Berlin, no run since
    assert _fresh(timedelta(0), now=monday_late, when="0 2 * * 1-5", finished=friday)[
        "reason"] == "Stale"


def test_a_dump_that_swallowed_the_nights_run_is_fresh_until_the_next_nights() -> None:
    """An on-demand dump from 01:30 to 03:10 in Berlin holds the CronJob past its
    02:00 fire and the starting deadline: the CronJob controller skips that run.
    The policy read Stale from 05:40 on, counting on it."""
    ended = datetime(2026, 12, 4, 2, 10, tzinfo=UTC)  # 03:10 in Berlin
    took = timedelta(hours=1, minutes=40)
    assert _fresh(timedelta(0), now=ended + timedelta(hours=5), finished=ended,
                  took=took)["reason"] == "Fresh"
    # Until the next night's run has had as long, and the grace.
    assert _fresh(timedelta(0), now=ended + timedelta(hours=27), finished=ended,
                  took=took)["reason"] == "Stale"


def test_no_backup_is_late_once_the_run_after_the_first_has_had_its_grace() -> None:
    # Created on 2026-11-01 (UTC); runs at 02:00 in Berlin (01:00 UTC).
    assert _fresh(timedelta(0), now=datetime(2026, 11, 2, 3, 0, tzinfo=UTC),
                  finished=None)["reason"] == "NoBackupYet"
    late = _fresh(timedelta(0), now=datetime(2026, 11, 2, 3, 1, tzinfo=UTC), finished=None)
    assert (late["status"], late["reason"]) == ("False", "NoBackup")


WEEKNIGHTS = SuspendWindow(start="0 20 * * 1-5", end="0 7 * * 1-5", time_zone="Etc/UTC")


def _backup(started: datetime, minutes: int = 30) -> Manifest:
    return Manifest(tenant="acme", run_id="r1", bucket="b", prefix="backups/acme/r1",
                    started_at=started, finished_at=started + timedelta(minutes=minutes),
                    artifacts=[])


def test_a_window_before_the_next_run_is_due_does_not_excuse_its_miss() -> None:
    """Backups at 12:00 daily, weeknights suspended: Monday's backup done, Tuesday's
    failed. The window of Monday night came before Tuesday's run was owed."""
    monday = _backup(datetime(2026, 11, 30, 12, tzinfo=UTC))
    tuesday_afternoon = datetime(2026, 12, 1, 15, tzinfo=UTC)
    assert backup.suspended_while_owed([WEEKNIGHTS], "0 12 * * *", "Etc/UTC", monday,
                                       tuesday_afternoon) == timedelta(0)
    # Tuesday night's window, after the owed run, is the database's stopped time.
    wednesday_night = datetime(2026, 12, 2, 1, tzinfo=UTC)
    assert backup.suspended_while_owed([WEEKNIGHTS], "0 12 * * *", "Etc/UTC", monday,
                                       wednesday_night) == timedelta(hours=5)
    stopped = backup.suspended_while_owed([WEEKNIGHTS], "0 12 * * *", "Etc/UTC", monday,
                                          tuesday_afternoon)
    # 26.5 h against 24 h to the next run and the grace: stale, as without windows.
    conditions = backup._conditions(
        BackupPolicyStatus(), 1, tuesday_afternoon, "0 12 * * *", "Etc/UTC", None, monday,
        {"metadata": {"name": "n", "namespace": "ns",
                      "creationTimestamp": "2026-11-01T00:00:00Z"}},
        [], None, [], None, stopped)
    [fresh] = [c for c in conditions if c.type == "BackupFresh"]
    assert fresh.reason == "Stale", fresh.message


def test_a_run_that_fell_in_the_window_is_owed_only_from_its_fire_on() -> None:
    """A nightly 02:00 run inside the weekend window: Friday's backup stays Fresh
    over the weekend, the time from Saturday's run on not counted."""
    friday = _backup(datetime(2026, 12, 4, 2, tzinfo=UTC), minutes=5)
    weekend = SuspendWindow(start="0 20 * * 5", end="0 7 * * 1", time_zone="Etc/UTC")
    monday = datetime(2026, 12, 7, 7, 30, tzinfo=UTC)
    stopped = backup.suspended_while_owed([weekend], "0 2 * * *", "Etc/UTC", friday, monday)
    assert stopped == timedelta(days=2, hours=5)  # Saturday 02:00 to Monday 07:00
    age = monday - friday.finished_at - stopped
    assert age < timedelta(hours=26), age
