"""Which physical backup is due, what a request becomes, the window and the condition.

(What is read from a repository pgBackRest really wrote: tests/backup/
test_pgbackrest_s3.py; on running pods: tests/realnode/test_archiving.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stackforge_operator.builders import archiving
from stackforge_operator.models.backup import (
    ArchiveStatus,
    PhysicalBackup,
    PhysicalBackupRequest,
    PhysicalBackups,
    PhysicalBackupType,
)
from stackforge_operator.models.common import ConditionStatus
from stackforge_operator.reconcile import physical_backups as physical
from stackforge_operator.reconcile.archive_status import allowed_age
from tests.unit.reconcile.test_archive_status import Bucket

FULL, DIFF, INCR = (PhysicalBackupType.FULL, PhysicalBackupType.DIFFERENTIAL,
                    PhysicalBackupType.INCREMENTAL)
NOW = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)  # a Monday
SPEC = PhysicalBackups.model_validate({
    "fullSchedule": "0 1 * * 0",  # Sundays 01:00
    "differentialSchedule": "0 1 * * *",  # daily 01:00
    "incrementalSchedule": "0 * * * *",  # hourly
    "retention": {"fullCount": 2},
})
ZONE = "Etc/UTC"


def _backup(kind: PhysicalBackupType, stop: datetime) -> PhysicalBackup:
    label = stop.strftime("%Y%m%d-%H%M%SF") + (
        "" if kind == FULL else "_" + stop.strftime("%Y%m%d-%H%M%S") + kind.value[0].upper())
    return PhysicalBackup(label=label, type=kind, start_time=stop - timedelta(minutes=1),
                          stop_time=stop)


@pytest.mark.parametrize(("label", "expected"), [
    ("20261130-220000F", (FULL, datetime(2026, 11, 30, 22, 0, tzinfo=UTC))),
    ("20261130-220000F_20261130-230510D", (DIFF, datetime(2026, 11, 30, 23, 5, 10, tzinfo=UTC))),
    ("20261130-220000F_20261201-000000I", (INCR, datetime(2026, 12, 1, tzinfo=UTC))),
    ("backup.history", None),
    ("20261130-220000X", None),
    ("20261130-220000F_20261130-230000F", None),
])
def test_labels_name_type_and_start(label: str,
                                    expected: tuple[PhysicalBackupType, datetime] | None) -> None:
    assert physical.parse_label(label) == expected


def test_without_a_full_backup_one_is_due_at_once() -> None:
    assert physical.due(SPEC, ZONE, NOW, []) == physical.Due(FULL, None)
    # An incremental alone (its full expired by hand) restores nothing.
    assert physical.due(SPEC, ZONE, NOW, [_backup(INCR, NOW)]) == physical.Due(FULL, None)


def test_the_biggest_kind_whose_last_fire_is_unsatisfied_is_due() -> None:
    sunday = datetime(2026, 11, 29, 1, tzinfo=UTC)
    today = datetime(2026, 11, 30, 1, tzinfo=UTC)
    hour = datetime(2026, 11, 30, 22, tzinfo=UTC)
    # The last full is older than Sunday's fire: a full is due.
    assert physical.due(SPEC, ZONE, NOW, [_backup(FULL, sunday - timedelta(days=1))]) == (
        physical.Due(FULL, sunday))
    # Sunday's full was made: today's differential is due.
    done = [_backup(FULL, sunday + timedelta(minutes=5))]
    assert physical.due(SPEC, ZONE, NOW, done) == physical.Due(DIFF, today)
    # Then the hour's incremental.
    done.append(_backup(DIFF, today + timedelta(minutes=5)))
    assert physical.due(SPEC, ZONE, NOW, done) == physical.Due(INCR, hour)
    done.append(_backup(INCR, hour + timedelta(minutes=2)))
    assert physical.due(SPEC, ZONE, NOW, done) is None


def test_a_bigger_backup_stands_in_for_smaller_ones() -> None:
    # A full finished after the hour's fire is the day's differential and the
    # hour's incremental too.
    assert physical.due(SPEC, ZONE, NOW, [_backup(FULL, NOW - timedelta(minutes=10))]) is None
    # An incremental is no differential.
    done = [_backup(FULL, datetime(2026, 11, 29, 1, 5, tzinfo=UTC)),
            _backup(INCR, NOW - timedelta(minutes=10))]
    assert physical.due(SPEC, ZONE, NOW, done) == physical.Due(
        DIFF, datetime(2026, 11, 30, 1, tzinfo=UTC))


def test_schedules_fire_in_the_policys_time_zone() -> None:
    spec = SPEC.model_copy(update={"differential_schedule": None, "incremental_schedule": None,
                                   "full_schedule": "0 23 * * *"})
    done = [_backup(FULL, datetime(2026, 11, 29, 23, 5, tzinfo=UTC))]
    # 23:00 in Berlin is 22:00 UTC: fired already; in UTC not yet.
    assert physical.due(spec, "Europe/Berlin", NOW, done) == physical.Due(
        FULL, datetime(2026, 11, 30, 22, tzinfo=UTC))
    assert physical.due(spec, ZONE, NOW, done) is None


def _request(at: datetime, kind: PhysicalBackupType = FULL) -> archiving.BackupRequest:
    return archiving.backup_request(at, kind, SPEC.retention)


def test_a_due_backup_is_asked_for_with_the_retention() -> None:
    plan = physical.plan(SPEC, ZONE, NOW, [], None)
    assert plan.request == plan.pending == _request(NOW)
    assert archiving.request_value(plan.request) == "20261130T223000Z full count 2"


def test_an_outstanding_request_stands_until_a_backup_completes_after_it() -> None:
    asked = _request(NOW - timedelta(minutes=3))
    plan = physical.plan(SPEC, ZONE, NOW, [], asked)
    assert plan.request == plan.pending == asked
    # A backup that finished before the request does not answer it.
    older = [_backup(FULL, NOW - timedelta(minutes=4))]
    assert physical.plan(SPEC, ZONE, NOW, older, asked).pending == asked
    # Once answered, the annotation goes and nothing is pending.
    done = [_backup(FULL, NOW - timedelta(minutes=1))]
    assert physical.plan(SPEC, ZONE, NOW, done, asked) == physical.Plan(None, None)


def test_a_later_fire_replaces_a_request_that_never_completed() -> None:
    sunday_full = [_backup(FULL, datetime(2026, 11, 29, 1, 5, tzinfo=UTC))]
    stuck = _request(datetime(2026, 11, 30, 1, 0, 30, tzinfo=UTC), DIFF)
    # The day's differential is still what is due, and the request covers it.
    assert physical.plan(SPEC, ZONE, NOW, sunday_full, stuck).request == stuck
    # An incremental done since does not satisfy a differential request ...
    done = [*sunday_full, _backup(INCR, datetime(2026, 11, 30, 0, 30, tzinfo=UTC))]
    assert physical.plan(SPEC, ZONE, NOW, done, stuck).pending == stuck
    # ... but a request older than a fire of its kind is asked again, anew.
    old = _request(datetime(2026, 11, 29, 0, 30, tzinfo=UTC), DIFF)
    plan = physical.plan(SPEC, ZONE, NOW, sunday_full, old)
    assert plan.request == _request(NOW, DIFF)


def test_the_window_runs_from_the_oldest_backup_to_a_timeout_before_the_newest_segment() -> None:
    backups = [_backup(FULL, NOW - timedelta(days=2)), _backup(INCR, NOW - timedelta(hours=1))]
    archive = ArchiveStatus(last_archived_time=NOW - timedelta(seconds=20))
    found = physical.window(backups, archive, 60)
    assert found is not None
    assert found.first_point == NOW - timedelta(days=2)
    assert found.last_point == NOW - timedelta(seconds=80)
    # Just after the first backup: the window is its end alone.
    just = physical.window([_backup(FULL, NOW - timedelta(seconds=30))], archive, 60)
    assert just is not None and just.first_point == just.last_point
    assert physical.window([], archive, 60) is None
    assert physical.window(backups, ArchiveStatus(), 60) is None


def test_while_a_queue_drains_the_window_ends_where_the_primary_says_it_is_archived() -> None:
    backups = [_backup(FULL, NOW - timedelta(days=2))]
    # After a 30-minute outage of the bucket: a segment written 29 minutes ago
    # arrived just now; the primary has archived its heartbeats up to 28
    # minutes ago. A restore to a minute ago would find no WAL for it.
    draining = ArchiveStatus(last_archived_time=NOW - timedelta(seconds=2),
                             archived_through=NOW - timedelta(minutes=28))
    found = physical.window(backups, draining, 60)
    assert found is not None and found.last_point == NOW - timedelta(minutes=28)
    # In step the primary's figure is exact, and closer than the bucket's
    # bound (a timeout before the newest arrival) ...
    in_step = ArchiveStatus(last_archived_time=NOW - timedelta(seconds=20),
                            archived_through=NOW - timedelta(seconds=50))
    found = physical.window(backups, in_step, 60)
    assert found is not None and found.last_point == NOW - timedelta(seconds=50)
    # ... but never past what reached the bucket (a figure from another incarnation).
    ahead = ArchiveStatus(last_archived_time=NOW - timedelta(seconds=20),
                          archived_through=NOW - timedelta(seconds=5))
    found = physical.window(backups, ahead, 60)
    assert found is not None and found.last_point == NOW - timedelta(seconds=20)
    # Never before the first point.
    found = physical.window(backups, ArchiveStatus(
        last_archived_time=NOW, archived_through=NOW - timedelta(days=3)), 60)
    assert found is not None and found.last_point == found.first_point


def test_the_condition_turns_false_when_a_request_outlives_the_deadline() -> None:
    deadline = timedelta(hours=6)
    asked = _request(NOW - timedelta(hours=7), DIFF)
    backups = [_backup(FULL, NOW - timedelta(days=1))]
    late = physical.observation(backups, asked, "postgres-0", NOW, deadline)
    assert (late.status, late.reason) == (ConditionStatus.FALSE, "BackupOverdue")
    assert "kubectl logs postgres-0 -c archiver" in late.message and "6h00m" in late.message
    fine = physical.observation(backups, _request(NOW - timedelta(hours=1), DIFF), "postgres-0",
                                NOW, deadline)
    assert (fine.status, fine.reason) == (ConditionStatus.TRUE, "BackupsCurrent")
    first = physical.observation([], _request(NOW), "postgres-0", NOW, deadline)
    assert (first.status, first.reason) == (ConditionStatus.UNKNOWN, "FirstBackupRunning")
    nothing = physical.observation([], None, None, NOW, deadline)
    assert (nothing.status, nothing.reason) == (ConditionStatus.UNKNOWN, "WaitingForRepository")


def test_backups_that_never_complete_turn_the_condition_false_though_fires_replace_them() -> None:
    """Each fire replaces a request that never completed with one stamped now:
    timed from the newest, a backup failing for ever stayed BackupsCurrent when a
    schedule fired more often than the deadline (a full every 4 h, 6 h allowed)."""
    spec = PhysicalBackups.model_validate({"fullSchedule": "0 */4 * * *",
                                           "retention": {"fullCount": 2}})
    deadline = timedelta(hours=6)
    start = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    backups = [_backup(FULL, start - timedelta(minutes=30))]
    current: archiving.BackupRequest | None = None
    recorded: PhysicalBackupRequest | None = None
    overdue_at = None
    replaced = 0
    for minute in range(0, 12 * 60, 5):
        now = start + timedelta(minutes=minute)
        plan = physical.plan(spec, ZONE, now, backups, current)
        replaced += plan.request is not None and current is not None and plan.request != current
        current = plan.request
        since = physical.waiting_since(recorded, plan.pending, backups)
        assert plan.pending is not None
        recorded = PhysicalBackupRequest(id=plan.pending.id, type=plan.pending.type,
                                         pod="postgres-0", waiting_since=since)
        found = physical.observation(backups, plan.pending, "postgres-0", now, deadline, since)
        if found.reason == "BackupOverdue" and overdue_at is None:
            overdue_at = now
            assert "have not completed" in found.message
    assert replaced >= 2  # (the fires did replace the request)
    assert overdue_at is not None and overdue_at - start <= deadline + timedelta(minutes=5)
    # A backup completes: the wait starts over from the request now pending.
    done = [*backups, _backup(FULL, start + timedelta(hours=12, minutes=1))]
    later = start + timedelta(hours=16, minutes=1)
    fresh = physical.plan(spec, ZONE, later, done, current)
    assert fresh.pending is not None
    assert physical.waiting_since(recorded, fresh.pending, done) == fresh.pending.requested_at
    assert physical.waiting_since(recorded, None, done) is None


def test_a_schedule_in_the_hour_the_clocks_repeat_asks_once() -> None:
    """Croniter yields 02:30 twice the night Berlin goes back: a second full
    backup an hour after the first, and with fullCount retention an older full
    expired a cycle early."""
    spec = PhysicalBackups.model_validate({"fullSchedule": "30 2 * * *",
                                           "retention": {"fullCount": 2}})
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    made = [_backup(FULL, first - timedelta(days=1)),
            _backup(FULL, first + timedelta(minutes=20))]
    for minutes in (0, 60, 61, 90, 120):  # the second 02:30 CET is 01:30 UTC
        assert physical.due(spec, "Europe/Berlin", first + timedelta(minutes=minutes + 21),
                            made) is None


def test_with_a_window_backup_freshness_is_the_age_of_the_last_archived_point() -> None:
    margin = allowed_age(60)  # the timeout plus the operator's push margin
    young = physical.freshness(ArchiveStatus(last_archived_time=NOW - timedelta(seconds=30)),
                               60, NOW)
    assert young is not None
    assert (young.type, young.status, young.reason) == ("BackupFresh", ConditionStatus.TRUE,
                                                        "WithinRPO")
    assert young.message == ("the last archived point is 2026-11-30T22:29:30+00:00 "
                             "(allowed: 120s old)")
    # A time, not an age: read again a pass later, the status is the same.
    again = physical.freshness(ArchiveStatus(last_archived_time=NOW - timedelta(seconds=30)),
                               60, NOW + timedelta(seconds=5))
    assert again is not None and again.message == young.message
    old = physical.freshness(ArchiveStatus(last_archived_time=NOW - margin - timedelta(seconds=1)),
                             60, NOW)
    assert old is not None and (old.status, old.reason) == (ConditionStatus.FALSE, "RPOExceeded")
    assert physical.freshness(ArchiveStatus(), 60, NOW) is None
    assert physical.freshness(None, 60, NOW) is None


def test_a_draining_queue_exceeds_the_rpo_though_segments_arrive() -> None:
    reach = allowed_age(60) + timedelta(seconds=60)
    arriving = NOW - timedelta(seconds=3)
    draining = physical.freshness(ArchiveStatus(
        last_archived_time=arriving, archived_through=NOW - reach - timedelta(seconds=1)),
        60, NOW)
    assert draining is not None
    assert (draining.status, draining.reason) == (ConditionStatus.FALSE, "RPOExceeded")
    assert "archive queue is draining" in draining.message
    # Two timeouts behind is in step: a beat every half timeout, in a segment
    # closed up to a timeout later.
    in_step = physical.freshness(ArchiveStatus(
        last_archived_time=arriving, archived_through=NOW - timedelta(seconds=120)), 60, NOW)
    assert in_step is not None and in_step.status == ConditionStatus.TRUE


def test_a_primary_figure_not_read_again_is_not_called_a_draining_queue() -> None:
    # The figure kept from an earlier read (the exporter unreadable since) still
    # bounds what can be promised, but the message says why it is old.
    reach = allowed_age(60) + timedelta(seconds=60)
    kept = ArchiveStatus(last_archived_time=NOW - timedelta(seconds=3),
                         archived_through=NOW - reach - timedelta(seconds=1))
    unread = physical.freshness(kept, 60, NOW, primary_reported=False)
    assert unread is not None
    assert (unread.status, unread.reason) == (ConditionStatus.FALSE, "RPOExceeded")
    assert "draining" not in unread.message
    assert "reported nothing since" in unread.message
    read_now = physical.freshness(kept, 60, NOW, primary_reported=True)
    assert read_now is not None and "draining" in read_now.message


class _Repository(Bucket):
    """The archive-status test's bucket, answering HEAD as S3 does."""

    def __init__(self, objects: dict[str, datetime]) -> None:
        super().__init__(objects)
        self.heads: list[str] = []

    def head_object(self, **kwargs: str) -> dict[str, Any]:
        key = kwargs["Key"]  # (boto3's names)
        self.heads.append(key)
        if key not in self.objects:
            raise ClientError({"Error": {"Code": "404"}}, "HeadObject")
        return {"LastModified": self.objects[key]}


def test_a_backup_whose_expiry_was_interrupted_leaves_the_window() -> None:
    """pgBackRest's expiry deletes a backup's manifest before its files: one cut
    short (its pod stopped) left a folder that restores nothing, and the window
    started at it, so targets no backup reaches were accepted."""
    prefix = physical.backup_prefix("/sf/_pgbackrest/acme/7400-20261101T000000Z", "acme")
    labels = ["20261128-010000F", "20261129-010000F", "20261130-010000F"]
    objects = {}
    for i, label in enumerate(labels):
        objects[f"{prefix}{label}/{physical.MANIFEST}"] = NOW - timedelta(days=2 - i)
        objects[f"{prefix}{label}/pg_data/PG_VERSION.zst"] = NOW - timedelta(days=2 - i)
    repository = _Repository(objects)
    path = "/sf/_pgbackrest/acme/7400-20261101T000000Z"
    known = physical.read(repository, "bkt", path, "acme", [])  # type: ignore[arg-type]
    assert [b.label for b in known] == labels
    repository.heads = []
    assert physical.read(repository, "bkt", path, "acme", known) == known  # type: ignore[arg-type]
    # What was known is looked at again, the oldest only: one request a pass.
    assert repository.heads == [f"{prefix}{labels[0]}/{physical.MANIFEST}"]
    del repository.objects[f"{prefix}{labels[0]}/{physical.MANIFEST}"]  # expiry cut short
    again = physical.read(repository, "bkt", path, "acme", known)  # type: ignore[arg-type]
    assert [b.label for b in again] == labels[1:]


def _handed(at: datetime, retention: str) -> str:
    return f"{at.strftime('%Y%m%dT%H%M%SZ')} full {retention}"


def test_full_backups_the_count_retention_removes_and_still_there_are_stale() -> None:
    week = timedelta(days=7)
    fulls = [_backup(FULL, NOW - 3 * week), _backup(FULL, NOW - 2 * week),
             _backup(FULL, NOW - week - timedelta(hours=1))]
    newest = _backup(INCR, NOW - week)
    backups = [*fulls, newest]
    asked = _handed(NOW - week - timedelta(minutes=5), "count 2")
    assert physical.unexpired(asked, backups, NOW) == fulls[:1]
    # Within the grace after the newest backup: expiry may still be deleting.
    grace = newest.stop_time + physical.EXPIRY_GRACE - timedelta(seconds=1)
    assert physical.unexpired(asked, backups, grace) == []
    # The newest backup answers an older request (kept by its retention): not judged.
    assert physical.unexpired(_handed(NOW - week + timedelta(minutes=1), "count 2"),
                              backups, NOW) == []
    assert physical.unexpired(_handed(NOW - 4 * week, "count 3"), backups, NOW) == []
    assert physical.unexpired(None, backups, NOW) == []
    observed = physical.observation(backups, None, "postgres-0", NOW, timedelta(hours=1),
                                    stale=fulls[:1])
    assert (observed.status, observed.reason) == (ConditionStatus.FALSE, "RetentionNotApplied")
    assert fulls[0].label in observed.message and "kubectl logs postgres-0 -c" in observed.message


def test_the_time_retention_keeps_the_newest_full_backup_before_its_days() -> None:
    day = timedelta(days=1)
    fulls = [_backup(FULL, NOW - 40 * day), _backup(FULL, NOW - 35 * day),
             _backup(FULL, NOW - 25 * day), _backup(FULL, NOW - 2 * day)]
    asked = _handed(NOW - 2 * day - timedelta(hours=1), "time 30")
    # 35 days old restores the days before the 25-day-old one: kept; 40 days is not.
    assert physical.unexpired(asked, fulls, NOW) == fulls[:1]
    # A day's slack for how pgBackRest counts days: 31.5 days before the newest
    # backup is not judged.
    assert physical.unexpired(asked, [_backup(FULL, NOW - 33.5 * day),
                                      _backup(FULL, NOW - 33 * day), *fulls[2:]], NOW) == []


def test_only_an_answered_request_says_which_retention_the_repository_was_expired_by() -> None:
    backup = _backup(FULL, NOW - timedelta(hours=1))
    before, after = _handed(NOW - timedelta(hours=2), "count 1"), _handed(NOW, "count 1")
    assert physical.answered(before, [backup]) == before
    # Handed and not answered yet: the record stays the older one's.
    assert physical.answered(after, [backup]) is None
    assert physical.answered(None, [backup]) is None
    assert physical.answered("not a request", [backup]) is None


def test_a_restore_starts_from_the_full_backup_of_the_newest_backup_its_target_follows() -> None:
    day = timedelta(days=1)
    first, diff = _backup(FULL, NOW - 14 * day), _backup(DIFF, NOW - 10 * day)
    second, incr = _backup(FULL, NOW - 7 * day), _backup(INCR, NOW - day)
    backups = [first, diff, second, incr]
    assert physical.needed_full(backups, None) == second
    assert physical.needed_full(backups, NOW - 9 * day) == first  # the diff's full backup
    assert physical.needed_full(backups, NOW - 7 * day) == second
    assert physical.needed_full(backups, NOW - 15 * day) is None  # before every backup
    assert physical.needed_full([], None) is None


def test_the_expiry_after_a_full_backup_removes_what_a_count_retention_leaves_out() -> None:
    week = timedelta(days=7)
    first, second = _backup(FULL, NOW - 2 * week), _backup(FULL, NOW - week)
    backups = [first, second]
    two = archiving.BackupRequest(NOW, FULL, "count", 2)
    # Restoring into the first full backup's days: the new one pushes it out.
    assert physical.expired_by(two, backups, NOW - week - timedelta(days=1), NOW) == first
    assert physical.expired_by(two, backups, None, NOW) is None
    one = archiving.BackupRequest(NOW, FULL, "count", 1)
    assert physical.expired_by(one, backups, None, NOW) == second
    # A differential backup adds no full one: the count keeps what it kept.
    assert physical.expired_by(archiving.BackupRequest(NOW, DIFF, "count", 2), backups,
                               NOW - week - timedelta(days=1), NOW) is None


def test_the_expiry_by_days_is_judged_a_day_early() -> None:
    day = timedelta(days=1)
    oldest, older = _backup(FULL, NOW - 40 * day), _backup(FULL, NOW - 29.5 * day)
    backups = [oldest, older, _backup(FULL, NOW - 2 * day)]
    request = archiving.BackupRequest(NOW, INCR, "time", 30)
    # 29.5 days old is within 30, but pgBackRest may count it a day older:
    # then the newest full one before the 30 days is it, and the oldest goes.
    assert physical.expired_by(request, backups, NOW - 35 * day, NOW) == oldest
    assert physical.expired_by(request, backups, NOW - 20 * day, NOW) is None
