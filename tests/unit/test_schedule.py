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
    assert schedule.interval("0 2 * * *", "Etc/UTC", at) == timedelta(days=1)


def test_staleness_limit_is_interval_plus_grace() -> None:
    at = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert schedule.staleness_limit("*/15 * * * *", "Etc/UTC", at, timedelta(minutes=5)) == (
        timedelta(minutes=20))


def test_unknown_time_zone_is_a_clear_error() -> None:
    with pytest.raises(schedule.UnknownTimeZoneError, match="Mars/Olympus"):
        schedule.next_fire("0 2 * * *", "Mars/Olympus", datetime.now(UTC))
