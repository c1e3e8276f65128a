"""Which runs to delete: a pure function of the runs, the policy's retention and the time.

Every rule *keeps*; a complete backup is deleted only when no rule keeps it
(``Retention``'s contract: "a backup is kept if any rule keeps it"):

- ``keepLast N``: the N newest complete backups;
- ``daily/weekly/monthly N``: the newest complete backup of each of the last
  N calendar days / ISO weeks / months, counting the current one (GFS);
- ``maxAgeDays D``: every complete backup at most D days old.

And whatever the rules say:

- the newest complete backup is never deleted, nor the newest complete one
  that holds a PostgreSQL dump: the rules count runs of every kind, and a
  policy's targets changed to the configuration alone would otherwise have
  its last database dumps pruned by a few runs without one;
- a run marked running is never deleted (the caller marks every run without
  a manifest begun since its policy's oldest running Job: housekeeping.py),
  nor is a run without a manifest younger than the in-progress grace period
  (it may still finish);
- a run without a manifest older than the grace period is garbage: deleted;
- a complete run a restore is reading (``held``: reconcile/restore_holds.py)
  is kept until the restore ends, whatever the rules say;
- a complete run of another database than the newest backup's (its
  ``database``, initdb's system identifier, differs) is kept and not counted:
  a volume lost and made afresh, or a tenant made again under its name, would
  otherwise have its empty database's nightly dumps push the old database's
  last backups out within ``keepLast`` nights. A person deletes those once
  they are not needed. Runs whose database is not known (older manifests) are
  taken for the newest one's.

A backup's time is its run's start (the run id's timestamp), the moment its
snapshot was taken.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from stackforge_operator.models.backup import Retention

# A run gets at most activeDeadlineSeconds (default 6 h) before Kubernetes
# stops it; an hour more covers a pod that is slow to be killed.
DEFAULT_IN_PROGRESS_GRACE = timedelta(hours=7)


@dataclass(frozen=True)
class RunState:
    """What retention needs to know of one run."""

    run_id: str
    started_at: datetime
    complete: bool  # has a manifest
    running: bool = False  # known to be in progress (its Job is active)
    has_dump: bool = True  # holds a PostgreSQL dump (as its objects' names say)
    database: str | None = None  # the dumped database's system identifier, if known


def _day(d: date) -> int:
    return d.toordinal()


def _iso_week(d: date) -> int:
    # The Monday that starts the ISO week, as a day number, /7: consecutive weeks
    # give consecutive numbers across year boundaries.
    return (d.toordinal() - d.weekday()) // 7


def _month(d: date) -> int:
    return d.year * 12 + d.month - 1


_PERIODS: dict[str, Callable[[date], int]] = {
    "daily": _day,
    "weekly": _iso_week,
    "monthly": _month,
}


def _newest_per_period(
    complete: list[RunState], count: int, period: Callable[[date], int], now: date, tz: tzinfo
) -> set[str]:
    """Newest complete run in each of the last ``count`` periods (this one included)."""
    if count <= 0:
        return set()
    current = period(now)
    newest: dict[Hashable, RunState] = {}
    for run in complete:  # oldest first, so later ones replace earlier ones
        index = period(run.started_at.astimezone(tz).date())
        if current - index < count:
            newest[index] = run
    return {run.run_id for run in newest.values()}


def _order(run: RunState) -> tuple[datetime, str]:
    return (run.started_at, run.run_id)


def kept_by_rules(
    runs: Iterable[RunState], policy: Retention, now: datetime, *, tz: tzinfo = UTC
) -> set[str]:
    """Ids of complete runs that some rule keeps (the newest complete one always,
    and the newest complete one with a PostgreSQL dump)."""
    complete = sorted((r for r in runs if r.complete), key=_order)
    if not complete:
        return set()
    if all(
        v is None
        for v in (policy.keep_last, policy.daily, policy.weekly, policy.monthly,
                  policy.max_age_days)
    ):
        # No rule at all (the CRD refuses this): keeping everything is the safe reading.
        return {r.run_id for r in complete}
    keep = {complete[-1].run_id}
    with_dump = [r for r in complete if r.has_dump]
    if with_dump:
        keep.add(with_dump[-1].run_id)
    if policy.keep_last:
        keep |= {r.run_id for r in complete[-policy.keep_last:]}
    today = now.astimezone(tz).date()
    for name, period in _PERIODS.items():
        count = getattr(policy, name)
        if count:
            keep |= _newest_per_period(complete, count, period, today, tz)
    if policy.max_age_days is not None:
        oldest = now - timedelta(days=policy.max_age_days)
        keep |= {r.run_id for r in complete if r.started_at >= oldest}
    return keep


def of_other_databases(runs: Iterable[RunState]) -> list[str]:
    """Ids of the complete runs of another database than the newest backup's
    (the newest complete run that names one), oldest first: kept, and left out
    of every rule's count."""
    runs = sorted(runs, key=_order)
    current = next((r.database for r in reversed(runs) if r.complete and r.database), None)
    return [r.run_id for r in runs
            if r.complete and r.database is not None and r.database != current]


def select_for_deletion(
    runs: Iterable[RunState],
    policy: Retention,
    now: datetime,
    *,
    in_progress_grace: timedelta = DEFAULT_IN_PROGRESS_GRACE,
    tz: tzinfo = UTC,
    held: Collection[str] = (),
) -> set[str]:
    """Ids of the runs to delete now."""
    runs = list(runs)
    others = set(of_other_databases(runs))
    runs = [r for r in runs if r.run_id not in others]
    keep = kept_by_rules(runs, policy, now, tz=tz) | set(held)
    doomed = set()
    for run in runs:
        if run.running:
            continue
        if run.complete:
            if run.run_id not in keep:
                doomed.add(run.run_id)
        elif now - run.started_at > in_progress_grace:
            doomed.add(run.run_id)
    return doomed
