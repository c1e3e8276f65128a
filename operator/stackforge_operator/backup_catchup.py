"""Pure: the scheduled backup a tenant's suspend window made it miss.

While a tenant is suspended its database is stopped, so its BackupPolicy's
CronJob is suspended too: a dump then could only fail. A dev tenant whose
nightly window covers the backup's hour would then never be backed up, so the
run the window swallowed is made up for once the window has closed and the
database is back. The CronJob controller itself starts a run it missed by less
than its starting deadline when it is resumed; only older ones are the
operator's to start, so that one fire never runs twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from stackforge_operator import schedule, suspend_windows
from stackforge_operator.models.tenant import SuspendWindow


def missed_fire(windows: Sequence[SuspendWindow], when: str, zone: str, now: datetime,
                last_attempt: datetime | None, starting_deadline: timedelta
                ) -> datetime | None:
    """The schedule's latest fire at or before ``now`` when a window held the
    tenant suspended then, no window does now, nothing ran since
    (``last_attempt``: the newest run's start or backup's end, any result) and
    the CronJob controller will not start it (older than ``starting_deadline``);
    else None."""
    if not windows or suspend_windows.problem(windows, now) is not None:
        # No window, or none that can be kept (the tenant stalls on it).
        return None
    fire = schedule.previous_fire(when, zone, now)
    if last_attempt is not None and last_attempt >= fire:
        return None
    if now - fire <= starting_deadline:
        return None
    if not any(suspend_windows.is_open(w, fire) for w in windows):
        return None
    if any(suspend_windows.is_open(w, now) for w in windows):
        return None
    return fire


def request_for(fire: datetime) -> str:
    """The on-demand request a made-up run is started as: one per fire."""
    return f"missed-{fire.strftime('%Y%m%dT%H%MZ')}"
