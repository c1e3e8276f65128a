from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stackforge_operator import schedule


def test_nightly_schedule_in_a_time_zone() -> None:
    at = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert schedule.next_fire("0 2 * * *", "Etc/UTC", at) == datetime(2026, 11, 28, 2, 0,
                                                                        tzinfo=UTC)
    # 02:00 in Berlin (UTC+1 in November) is 01:00 UTC.
    assert schedule.next_fire("0 2 * * *", "Europe/Berlin", at) == datetime(
        2026, 11, 28, 1, 0, tzinfo=UTC)


GRACE = timedelta(hours=2)


def test_staleness_limit_is_the_gap_after_the_backups_own_run_plus_grace() -> None:
    at = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert schedule.staleness_limit("*/15 * * * *", "Etc/UTC", at, timedelta(minutes=5)) == (
        timedelta(minutes=20))
    # A weekday schedule: Friday's backup is owed a successor on Monday, so it is
    # not stale on Saturday morning (the gap after now would say 24 h).
    friday = datetime(2026, 12, 4, 2, 0, 5, tzinfo=UTC)
    assert schedule.staleness_limit("0 2 * * 1-5", "Etc/UTC", friday, GRACE) == (
        timedelta(days=3, seconds=-5) + GRACE)
    thursday = friday - timedelta(days=1)
    assert schedule.staleness_limit("0 2 * * 1-5", "Etc/UTC", thursday, GRACE) == (
        timedelta(days=1, seconds=-5) + GRACE)
    # Two runs a day, unevenly spaced: each backup's own gap.
    one = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
    assert schedule.staleness_limit("0 1,3 * * *", "Etc/UTC", one, GRACE) == (
        timedelta(hours=2) + GRACE)
    assert schedule.staleness_limit("0 1,3 * * *", "Etc/UTC", one + timedelta(hours=2),
                                    GRACE) == timedelta(hours=22) + GRACE


def test_a_wall_time_repeated_when_the_clocks_go_back_is_owed_once() -> None:
    # Berlin goes back from 03:00 CEST to 02:00 CET on 2026-10-25: 02:00 comes
    # twice (00:00 and 01:00 UTC). Croniter yields both; the night owes one run.
    first_two = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)
    assert schedule.next_fire("0 2 * * *", "Europe/Berlin", first_two) == (
        first_two + timedelta(hours=1))  # croniter's repeat, kept for other callers
    assert schedule.staleness_limit("0 2 * * *", "Europe/Berlin", first_two, GRACE) == (
        timedelta(hours=25) + GRACE)  # next: 02:00 CET on the 26th, 01:00 UTC
    the_night_before = datetime(2026, 10, 24, 0, 0, tzinfo=UTC)
    assert schedule.staleness_limit("0 2 * * *", "Europe/Berlin", the_night_before, GRACE) == (
        timedelta(hours=24) + GRACE)
    # Looking back (a physical backup's schedule): croniter names the second 02:30
    # (01:30 UTC) once it has passed; it counts as the first (00:30 UTC).
    first_half = first_two + timedelta(minutes=30)
    after_second = first_two + timedelta(hours=2)
    assert schedule.previous_fire("30 2 * * *", "Europe/Berlin", after_second) == (
        first_half + timedelta(hours=1))
    for at in (after_second, after_second + timedelta(hours=20)):
        assert schedule.previous_distinct_fire("30 2 * * *", "Europe/Berlin", at) == first_half
    assert schedule.previous_distinct_fire("0 * * * *", "Etc/UTC", after_second) == after_second


def test_a_wall_time_the_clocks_skip_is_not_owed() -> None:
    """Berlin goes forward from 02:00 CET to 03:00 CEST on 2026-03-29: 02:00 does
    not exist. Croniter moves that night's fire to 03:00; the CronJob controller
    (robfig/cron) does not run it, so the backup of the 28th is owed until the
    30th, and the policy read Stale for a day."""
    night_before = datetime(2026, 3, 28, 1, 0, tzinfo=UTC)  # 02:00 CET
    assert schedule.next_fire("0 2 * * *", "Europe/Berlin", night_before) == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC)  # croniter's 03:00 CEST, kept for other callers
    assert schedule.next_distinct_fire("0 2 * * *", "Europe/Berlin", night_before) == (
        datetime(2026, 3, 30, 0, 0, tzinfo=UTC))  # 02:00 CEST on the 30th
    assert schedule.staleness_limit("0 2 * * *", "Europe/Berlin", night_before, GRACE) == (
        timedelta(hours=47) + GRACE)
    # A time that exists that night is owed as ever, and so are a frequent
    # schedule's fires after the gap.
    assert schedule.next_distinct_fire("30 3 * * *", "Europe/Berlin", datetime(
        2026, 3, 29, 0, 30, tzinfo=UTC)) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert schedule.next_distinct_fire("*/30 * * * *", "Europe/Berlin", datetime(
        2026, 3, 29, 0, 45, tzinfo=UTC)) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_a_first_backup_is_late_once_the_run_after_the_first_has_come_and_gone() -> None:
    created = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)  # a Friday
    assert schedule.first_backup_deadline("0 2 * * *", "Etc/UTC", created, GRACE) == (
        datetime(2026, 12, 6, 2, 0, tzinfo=UTC) + GRACE)
    assert schedule.first_backup_deadline("0 2 * * 1-5", "Etc/UTC", created, GRACE) == (
        datetime(2026, 12, 8, 2, 0, tzinfo=UTC) + GRACE)


def test_unknown_time_zone_is_a_clear_error() -> None:
    with pytest.raises(schedule.UnknownTimeZoneError, match="Mars/Olympus"):
        schedule.next_fire("0 2 * * *", "Mars/Olympus", datetime.now(UTC))


def test_every_fire_in_the_repeated_hour_is_skipped() -> None:
    """Every 20 minutes in New York the night the clocks go back (2026-11-01,
    01:00-02:00 EDT, then 01:00-02:00 EST): 01:20, 01:40 and 01:00 EST of the
    repeated hour are skipped, not only the first two."""
    after = datetime(2026, 11, 1, 5, 41, tzinfo=UTC)  # 01:41 EDT
    found = schedule.next_distinct_fire("*/20 * * * *", "America/New_York", after)
    assert found == datetime(2026, 11, 1, 7, 0, tzinfo=UTC)  # 02:00 EST


def test_a_schedule_that_never_fires_or_an_unknown_zone_is_a_problem_not_an_error() -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    assert schedule.problem("0 2 * * *", "Europe/Berlin", now) is None
    never = schedule.problem("0 2 30 2 *", "Etc/UTC", now)
    assert never is not None and never.startswith("schedule '0 2 30 2 *' never fires")
    assert schedule.problem("0 2 * * *", "Europe/Kiev2", now) == (
        "unknown time zone 'Europe/Kiev2'")


def test_a_fire_a_long_run_outlasted_past_the_starting_deadline_is_not_owed() -> None:
    """A run holds the CronJob; the controller starts a fire it missed only within
    its starting deadline. A 01:30 dump that ended at 03:10 swallowed the 02:00
    run, and the limit counted on that run: Stale at 05:40 though nothing was
    wrong."""
    deadline = timedelta(hours=1)
    started = datetime(2026, 12, 1, 1, 30, tzinfo=UTC)
    late = started + timedelta(hours=1, minutes=40)  # 03:10
    assert schedule.owed_fire("0 2 * * *", "Etc/UTC", started, finished=late,
                              starting_deadline=deadline) == datetime(2026, 12, 2, 2, 0,
                                                                      tzinfo=UTC)
    assert schedule.staleness_limit("0 2 * * *", "Etc/UTC", started, GRACE, finished=late,
                                    starting_deadline=deadline) == (
        timedelta(hours=24, minutes=30) + GRACE)
    # Ended within the deadline: the controller starts the missed run then, so
    # it is still the one owed.
    soon = started + timedelta(hours=1, minutes=20)  # 02:50
    assert schedule.owed_fire("0 2 * * *", "Etc/UTC", started, finished=soon,
                              starting_deadline=deadline) == datetime(2026, 12, 1, 2, 0,
                                                                      tzinfo=UTC)
    # Without the run's end, as before.
    assert schedule.staleness_limit("0 2 * * *", "Etc/UTC", started, GRACE) == (
        timedelta(minutes=30) + GRACE)


@pytest.mark.parametrize(("expression", "backwards"), [
    ("0 22-2 * * *", "22-2"),
    ("0 2 * * FRI-MON", "FRI-MON"),
    ("0 2 * nov-feb *", "nov-feb"),
    ("30-10/5 * * * *", "30-10"),
])
def test_a_range_running_backwards_is_named_for_a_cron_job(expression: str,
                                                            backwards: str) -> None:
    """Croniter wraps such a range round; robfig/cron, the CronJob API's parser,
    refuses it, so the policy's CronJob was refused and retried unseen."""
    why = schedule.cron_job_problem(expression)
    assert why is not None and f"the range {backwards} runs backwards" in why
    assert schedule.problem(expression, "Etc/UTC", datetime(2026, 12, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize("expression", [
    "0 2 * * *", "0 2,14 * * *", "*/15 0-6 * * MON-FRI", "0 3 1 */3 *", "@daily",
    "0 2 * jan-mar 0-6"])
def test_ranges_that_run_forwards_are_a_cron_jobs(expression: str) -> None:
    assert schedule.cron_job_problem(expression) is None
