"""Suspend windows (pure): open between a start and an end schedule in a time zone,
the next edge, and the share of a week they cover."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stackforge_operator import schedule
from stackforge_operator import suspend_windows as sw
from stackforge_operator.models.tenant import SuspendWindow

WEEKNIGHTS = SuspendWindow(start="0 20 * * 1-5", end="0 7 * * 1-5", time_zone="Europe/Berlin")
WEEKEND = SuspendWindow(start="0 20 * * 5", end="0 7 * * 1", time_zone="Europe/Berlin")
# Tuesday 1 December 2026; Berlin is UTC+1.
TUESDAY = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(("utc", "suspended", "next_change"), [
    # 18:59 UTC is 19:59 in Berlin: open at 20:00 Berlin.
    (TUESDAY.replace(hour=18, minute=59), False, TUESDAY.replace(hour=19)),
    # The edge itself: open from the start's moment on.
    (TUESDAY.replace(hour=19), True, TUESDAY.replace(hour=6) + timedelta(days=1)),
    (TUESDAY.replace(hour=23), True, TUESDAY.replace(hour=6) + timedelta(days=1)),
    # 06:00 UTC Wednesday is 07:00 Berlin: closed again.
    (TUESDAY.replace(hour=6) + timedelta(days=1), False,
     TUESDAY.replace(hour=19) + timedelta(days=1)),
])
def test_a_weeknight_window_opens_and_closes_at_its_edges_in_its_zone(
        utc: datetime, suspended: bool, next_change: datetime) -> None:
    assert sw.state([WEEKNIGHTS], utc) == sw.WindowState(suspended, next_change)


def test_a_window_across_the_weekend_stays_open_from_friday_to_monday() -> None:
    saturday_noon = TUESDAY.replace(hour=11) + timedelta(days=4)
    assert sw.state([WEEKEND], saturday_noon).suspended
    monday_early = TUESDAY.replace(hour=5) + timedelta(days=6)  # 06:00 Berlin
    assert sw.state([WEEKEND], monday_early).suspended
    assert not sw.state([WEEKEND], monday_early + timedelta(hours=1)).suspended


def test_any_open_window_suspends_and_the_earliest_edge_of_all_is_next() -> None:
    thursday_lunch = TUESDAY.replace(hour=12, minute=30) + timedelta(days=2)
    lunch = SuspendWindow(start="0 12 * * *", end="0 13 * * *")  # UTC
    assert sw.state([WEEKNIGHTS, lunch], thursday_lunch) == sw.WindowState(
        True, thursday_lunch.replace(hour=13, minute=0))
    assert sw.state([], thursday_lunch) == sw.WindowState(False, None)


def test_schedules_firing_together_leave_the_window_closed() -> None:
    both = SuspendWindow(start="0 12 * * *", end="0 12 * * 1")
    monday_noon = TUESDAY.replace(hour=12) + timedelta(days=6)
    assert not sw.state([both], monday_noon).suspended
    assert sw.state([both], monday_noon + timedelta(days=1)).suspended


def test_the_share_of_a_week_counts_overlapping_windows_once() -> None:
    week = sw.week_start(TUESDAY + timedelta(hours=15))
    assert week == datetime(2026, 11, 30, tzinfo=UTC)  # Monday 00:00 UTC
    # Weeknights alone are open from Monday 20:00 to Saturday 07:00 except the days,
    # and Friday's stays open until Monday 07:00: 4 x 11 h + 59 h.
    assert sw.suspended_share([WEEKNIGHTS], week) == pytest.approx(103 / 168, abs=1e-9)
    # The weekend window lies inside those nights: the same hours, counted once.
    assert sw.suspended_share([WEEKNIGHTS, WEEKEND], week) == pytest.approx(103 / 168)
    lunch = SuspendWindow(start="0 12 * * *", end="0 13 * * *")
    assert sw.suspended_share([lunch], week) == pytest.approx(7 / 168)
    assert sw.suspended_share([], week) == 0


def test_a_window_opening_every_minute_is_counted_as_far_as_its_edges_go() -> None:
    busy = SuspendWindow(start="* * * * *", end="0 0 1 1 *")
    share = sw.suspended_share([busy], sw.week_start(TUESDAY))
    assert 0 < share <= 1


def test_a_zone_the_database_does_not_know_is_refused() -> None:
    # The schema lets zone-shaped names through; the tenant then stalls with this.
    mars = SuspendWindow(start="0 20 * * *", end="0 7 * * *", time_zone="Mars/Olympus_Mons")
    with pytest.raises(schedule.UnknownTimeZoneError, match="Mars/Olympus_Mons"):
        sw.state([mars], TUESDAY)


def test_the_time_windows_cover_between_two_moments_counts_overlaps_once() -> None:
    """What a backup's age leaves out: from a backup on Friday morning to Monday's
    window end, the weekend window (Friday 20:00 to Monday 07:00 Berlin) and the
    weeknight one overlap; 59 hours are covered, the 12 h 55 min the database ran
    are left."""
    friday = datetime(2026, 12, 4, 6, 5, tzinfo=UTC)
    monday = datetime(2026, 12, 7, 6, tzinfo=UTC)
    covered = sw.covered([WEEKNIGHTS, WEEKEND], friday, monday)
    assert covered == timedelta(hours=59)
    assert monday - friday - covered == timedelta(hours=12, minutes=55)
    # Inside one window, all of it; outside any, none; reversed or empty, none.
    night = TUESDAY.replace(hour=20)
    assert sw.covered([WEEKNIGHTS], night, night + timedelta(hours=3)) == timedelta(hours=3)
    assert sw.covered([WEEKNIGHTS], TUESDAY.replace(hour=8), TUESDAY.replace(hour=18)) == \
        timedelta(0)
    assert sw.covered([WEEKNIGHTS], monday, friday) == timedelta(0)
    assert sw.covered([], friday, monday) == timedelta(0)


def test_a_window_that_cannot_be_kept_is_named() -> None:
    """The CRD's grammar lets a date through that never comes: state() raised
    then, in every pass of the tenant and its policies, before any status."""
    never = SuspendWindow(start="0 20 * * 1-5", end="0 7 30 2 *", time_zone="Europe/Berlin")
    assert sw.problem([WEEKNIGHTS, WEEKEND], TUESDAY) is None
    why = sw.problem([WEEKNIGHTS, never], TUESDAY)
    assert why is not None and why.startswith(
        "spec.suspendWindows[1].end: schedule '0 7 30 2 *' never fires"), why
    with pytest.raises(ValueError):  # what the passes met before
        sw.state([WEEKNIGHTS, never], TUESDAY)
    unknown = SuspendWindow(start="0 20 * * *", end="0 7 * * *", time_zone="Mars/Olympus_Mons")
    assert "Mars/Olympus_Mons" in (sw.problem([unknown], TUESDAY) or "")
