"""Cron arithmetic for schedules in a time zone (croniter: the ecosystem's cron library)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from stackforge_operator.models.common import CRON_DAYS, CRON_MONTHS


class UnknownTimeZoneError(ValueError):
    pass


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise UnknownTimeZoneError(f"unknown time zone {name!r}") from error


def problem(expression: str, time_zone: str, now: datetime) -> str | None:
    """Why ``expression`` in ``time_zone`` cannot be scheduled, or None. The CRDs
    check a schedule's grammar and a zone's spelling, not that the zone exists
    or that the date ever comes (``0 2 30 2 *``): either made every later pass
    that asks for the next run raise, retried unseen."""
    try:
        next_distinct_fire(expression, time_zone, now)
    except UnknownTimeZoneError as error:
        return str(error)
    except ValueError as error:  # croniter's errors: a date that never comes
        return f"schedule {expression!r} never fires: {error}"
    return None


# Names in a cron field, as numbers (months from 1, days from Sunday 0).
_NAMES = {**{m.lower(): i for i, m in enumerate(CRON_MONTHS, start=1)},
          **{d.lower(): i for i, d in enumerate(CRON_DAYS)}}


def cron_job_problem(expression: str) -> str | None:
    """What the CronJob API's parser (robfig/cron) refuses in a schedule the CRD's
    grammar and croniter take, or None: a range that runs backwards (``22-2``,
    ``FRI-MON``), which croniter wraps round and robfig calls "beginning of range
    beyond end of range". The CronJob was refused, retried unseen, and no backup
    ran. (The operator's own schedules, suspend windows and drills, keep
    croniter's wrap.)"""
    if expression.startswith("@"):
        return None
    for field in expression.split():
        for item in field.split(","):
            span = item.split("/", 1)[0]
            if "-" not in span:
                continue
            first, last = (_cron_value(part) for part in span.split("-", 1))
            if first is not None and last is not None and first > last:
                return (f"schedule {expression!r}: the range {span} runs backwards, which "
                        "the CronJob's parser refuses; write it as two ranges")
    return None


def _cron_value(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    return _NAMES.get(text.lower())


def next_fire(expression: str, time_zone: str, after: datetime) -> datetime:
    """The first time the schedule fires strictly after ``after`` (aware, in UTC)."""
    local = after.astimezone(zone(time_zone))
    found: datetime = croniter(expression, local).get_next(datetime)
    return found.astimezone(after.tzinfo)


def previous_fire(expression: str, time_zone: str, at: datetime) -> datetime:
    """The last time the schedule fired at or before ``at`` (aware, in UTC)."""
    local = at.astimezone(zone(time_zone))
    # croniter's get_prev is strictly before its start: start a second later.
    found: datetime = croniter(expression, local + timedelta(seconds=1)).get_prev(datetime)
    return found.astimezone(at.tzinfo)


def previous_distinct_fire(expression: str, time_zone: str, at: datetime) -> datetime:
    """previous_fire, a wall-clock time repeated when the clocks go back counted at
    its first occurrence: a nightly backup at 02:30 is not owed again at the
    second 02:30 an hour after the first."""
    found = previous_fire(expression, time_zone, at)
    local_zone = zone(time_zone)
    if _repeated_wall_time(found, local_zone):
        # The same wall-clock time, its first occurrence: a fire too. (Not croniter
        # asked again from just before: around the change it answers a day early.)
        wall = found.astimezone(local_zone).replace(tzinfo=None)
        return wall.replace(tzinfo=local_zone, fold=0).astimezone(at.tzinfo)
    return found


def staleness_limit(
    expression: str, time_zone: str, started: datetime, grace: timedelta, *,
    finished: datetime | None = None, starting_deadline: timedelta | None = None,
) -> timedelta:
    """How old the newest complete backup may be (since it finished) before it
    counts as stale, the RPO breach: until the schedule's next run after the one
    that made it has had as long as that one took, plus ``grace``.

    Measured from the backup's own start, not from now: the gap to the next run
    is that backup's, whatever the gaps around now (a weekday schedule's Friday
    backup waits until Monday's run, not a day). A wall-clock time that comes
    twice when the clocks go back counts once: a nightly run at 02:00 does not
    owe a second backup an hour after the first. The run owed is
    :func:`owed_fire`'s.
    """
    owed = owed_fire(expression, time_zone, started, finished=finished,
                     starting_deadline=starting_deadline)
    return owed - started + grace


def owed_fire(
    expression: str, time_zone: str, started: datetime, *,
    finished: datetime | None = None, starting_deadline: timedelta | None = None,
) -> datetime:
    """The scheduled run owed after a backup that ran from ``started`` to
    ``finished``: the schedule's next fire after its start, unless the backup
    outlasted that fire by more than the CronJob's ``starting_deadline``. A run
    holds the CronJob (its own concurrencyPolicy, or the operator's hold for a
    run it did not start), and the controller starts a fire it missed only
    within the deadline: a 01:30 on-demand dump that ended at 03:10 swallowed
    the 02:00 run, and the limit counted on that run, so the policy read Stale
    hours later though nothing was wrong."""
    owed = next_distinct_fire(expression, time_zone, started)
    if finished is not None and starting_deadline is not None and (
            finished - owed > starting_deadline):
        owed = next_distinct_fire(expression, time_zone, finished - starting_deadline)
    return owed


def first_backup_deadline(
    expression: str, time_zone: str, created: datetime, grace: timedelta
) -> datetime:
    """When a policy made at ``created`` is late with its first complete backup:
    its first run has had until the run after it, plus ``grace``."""
    first = next_distinct_fire(expression, time_zone, created)
    return next_distinct_fire(expression, time_zone, first) + grace


def next_distinct_fire(expression: str, time_zone: str, after: datetime) -> datetime:
    """next_fire as the CronJob controller fires: skipping the second occurrence
    of a wall-clock time repeated when the clocks go back (croniter yields both),
    and a time the clocks skip when they go forward, which croniter moves to the
    first time after the gap (02:00 to 03:00) and robfig/cron does not run at
    all: a nightly 02:00 backup's limit counted on a run that never came, and
    the policy read Stale for a day every spring."""
    local_zone = zone(time_zone)
    times = croniter(expression, after.astimezone(local_zone))
    found: datetime = times.get_next(datetime)
    # Every fire in the repeated hour is skipped: a schedule of every few
    # minutes has many there (bounded: a repeated span is hours at most).
    for _ in range(_MAX_REPEATED_FIRES):
        if not _repeated_wall_time(found, local_zone) and not _moved_past_a_gap(
                expression, found, local_zone):
            break
        found = times.get_next(datetime)
    return found.astimezone(after.tzinfo)


def _moved_past_a_gap(expression: str, moment: datetime, local_zone: ZoneInfo) -> bool:
    """Whether croniter gave ``moment`` for a wall-clock time that did not exist
    (the schedule itself does not name the time it landed on)."""
    wall = moment.astimezone(local_zone).replace(tzinfo=None)
    named: bool = croniter.match(expression, wall)
    return not named


# Fires a schedule can have in a repeated span: every minute of three hours.
_MAX_REPEATED_FIRES = 3 * 60 + 1


def _repeated_wall_time(moment: datetime, local_zone: ZoneInfo) -> bool:
    """Whether ``moment`` is the second occurrence of its wall-clock time."""
    wall = moment.astimezone(local_zone).replace(tzinfo=None)
    first = wall.replace(tzinfo=local_zone, fold=0).astimezone(UTC)
    return first < moment.astimezone(UTC)
