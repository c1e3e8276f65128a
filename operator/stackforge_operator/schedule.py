"""Cron arithmetic for schedules in a time zone (croniter: the ecosystem's cron library)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter


class UnknownTimeZoneError(ValueError):
    pass


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise UnknownTimeZoneError(f"unknown time zone {name!r}") from error


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


def interval(expression: str, time_zone: str, at: datetime) -> timedelta:
    """The gap between the next two fire times after ``at`` (a day for "0 2 * * *")."""
    first = next_fire(expression, time_zone, at)
    return next_fire(expression, time_zone, first) - first


def staleness_limit(expression: str, time_zone: str, at: datetime, grace: timedelta) -> timedelta:
    """How old the newest complete backup may be before it counts as stale (the RPO breach)."""
    return interval(expression, time_zone, at) + grace
