"""Pure: a tenant's suspend windows (the runbook's "auto-shutdown for dev
environments"): whether one is open now, when that may change, and how much of a
week they cover (the cost estimate's saving).

A window is a pair of cron schedules in a time zone: it opens when ``start``
fires and closes when ``end`` fires. It is open at a moment when the latest
``start`` at or before it is later than the latest ``end``: "0 20 * * 1-5" to
"0 7 * * 1-5" is every weeknight, and "0 20 * * 5" to "0 7 * * 1" a weekend.
Two schedules firing at the same moment leave the window closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from stackforge_operator import schedule
from stackforge_operator.models.tenant import SuspendWindow

WEEK = timedelta(days=7)
# Edges walked per window and week at most: a window's schedules firing every
# minute would be 20,000 of them; the share is then counted as far as they go.
MAX_EDGES = 2000


@dataclass(frozen=True)
class WindowState:
    """Whether a window holds the tenant suspended, and the next moment that may change."""

    suspended: bool
    next_change: datetime | None


def problem(windows: Sequence[SuspendWindow], now: datetime) -> str | None:
    """Why a window cannot be kept, or None: a zone the zone database does not
    know, or a schedule whose date never comes (``0 20 30 2 *``), which the CRD's
    grammar lets through and which made every pass of the tenant, and of its
    policies, raise before it wrote a status."""
    for index, window in enumerate(windows):
        for field, expression in (("start", window.start), ("end", window.end)):
            why = schedule.problem(expression, window.time_zone, now)
            if why is not None:
                return f"spec.suspendWindows[{index}].{field}: {why}"
    return None


def is_open(window: SuspendWindow, at: datetime) -> bool:
    opened = schedule.previous_fire(window.start, window.time_zone, at)
    closed = schedule.previous_fire(window.end, window.time_zone, at)
    return opened > closed


def state(windows: Sequence[SuspendWindow], now: datetime) -> WindowState:
    """Suspended while any window is open; the earliest next edge of any window."""
    if not windows:
        return WindowState(False, None)
    edges = [schedule.next_fire(expression, w.time_zone, now)
             for w in windows for expression in (w.start, w.end)]
    return WindowState(any(is_open(w, now) for w in windows), min(edges))


def _open_spans(window: SuspendWindow, begin: datetime, end: datetime
                ) -> list[tuple[datetime, datetime]]:
    spans: list[tuple[datetime, datetime]] = []
    opened_at = begin if is_open(window, begin) else None
    at = begin
    for _ in range(MAX_EDGES):
        starts = schedule.next_fire(window.start, window.time_zone, at)
        ends = schedule.next_fire(window.end, window.time_zone, at)
        at = min(starts, ends)
        if at >= end:
            break
        if starts < ends and opened_at is None:
            opened_at = at
        elif starts >= ends and opened_at is not None:
            spans.append((opened_at, at))
            opened_at = None
    if opened_at is not None:
        spans.append((opened_at, min(at, end)))
    return spans


def suspended_share(windows: Sequence[SuspendWindow], week_start: datetime) -> float:
    """The share (0..1) of the week from ``week_start`` that some window covers."""
    key = tuple((w.start, w.end, w.time_zone) for w in windows)
    return _share(key, week_start)


@lru_cache(maxsize=256)
def _share(key: tuple[tuple[str, str, str], ...], week_start: datetime) -> float:
    # Cached: a tenant reconciles every resync, its windows and week change rarely.
    windows = [SuspendWindow(start=start, end=end, time_zone=zone) for start, end, zone in key]
    return covered(windows, week_start, week_start + WEEK) / WEEK


def covered(windows: Sequence[SuspendWindow], begin: datetime, end: datetime) -> timedelta:
    """How much of the time from ``begin`` to ``end`` some window covers (none
    when ``end`` is not later)."""
    if end <= begin:
        return timedelta(0)
    spans = sorted(span for w in windows for span in _open_spans(w, begin, end))
    total = timedelta(0)
    current: tuple[datetime, datetime] | None = None
    for opened, closed in spans:
        if current is not None and opened <= current[1]:
            current = (current[0], max(current[1], closed))
            continue
        if current is not None:
            total += current[1] - current[0]
        current = (opened, closed)
    if current is not None:
        total += current[1] - current[0]
    return total


def week_start(now: datetime) -> datetime:
    """Monday 00:00 UTC of ``now``'s week: the share is computed over a fixed week,
    so a resync in the middle of it computes the same figure."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=midnight.weekday())
