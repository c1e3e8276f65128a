"""Retention over random histories: the invariants hold whatever the runs and the policy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stackforge_operator.backup.retention import (
    DEFAULT_IN_PROGRESS_GRACE,
    RunState,
    kept_by_rules,
    of_other_databases,
    select_for_deletion,
)
from stackforge_operator.backup.store import RunListing, StoredObject
from stackforge_operator.models.backup import Retention

NOW = datetime(2026, 11, 27, 2, 30, tzinfo=UTC)
GRACE = DEFAULT_IN_PROGRESS_GRACE


def _policy(**values: int | None) -> Retention:
    # model_construct: the function must hold up even for policies the CRD
    # would refuse (no rule at all, maxAgeDays shorter than the GFS windows).
    fields: dict[str, Any] = {
        k: values.get(k) for k in ("keep_last", "daily", "weekly", "monthly", "max_age_days")
    }
    return Retention.model_construct(**fields)


optional_count = st.none() | st.integers(min_value=0, max_value=15)
policies = st.builds(
    _policy,
    keep_last=st.none() | st.integers(min_value=1, max_value=12),
    daily=optional_count,
    weekly=optional_count,
    monthly=optional_count,
    max_age_days=st.none() | st.integers(min_value=1, max_value=400),
)


@st.composite
def histories(draw: st.DrawFn) -> list[RunState]:
    """Runs spread over ~2 years before NOW (some just now, a few in the future: clock skew)."""
    offsets = draw(
        st.lists(
            st.one_of(
                st.integers(min_value=-3600, max_value=730 * 86400),
                st.integers(min_value=0, max_value=10 * 3600),  # dense recent runs
            ),
            max_size=60,
        )
    )
    runs = []
    for index, offset in enumerate(offsets):
        started = NOW - timedelta(seconds=offset)
        complete = draw(st.booleans())
        # Complete runs are rarely still marked running (the Job not yet reaped).
        running = draw(st.booleans() if not complete else st.sampled_from([False] * 9 + [True]))
        run_id = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{index:06x}"
        runs.append(RunState(run_id, started, complete=complete, running=running))
    return runs


def _newest_complete(runs: list[RunState]) -> RunState | None:
    complete = [r for r in runs if r.complete]
    return max(complete, key=lambda r: (r.started_at, r.run_id)) if complete else None


@settings(max_examples=400, deadline=None)
@given(histories(), policies)
def test_invariants(runs: list[RunState], policy: Retention) -> None:
    doomed = select_for_deletion(runs, policy, NOW, in_progress_grace=GRACE)
    by_id = {r.run_id: r for r in runs}

    assert doomed <= set(by_id), "only runs that exist are deleted"

    newest = _newest_complete(runs)
    if newest is not None:
        assert newest.run_id not in doomed, "the newest complete backup is never deleted"

    for run in runs:
        if run.running:
            assert run.run_id not in doomed, "a run marked running is never deleted"
        if not run.complete and NOW - run.started_at <= GRACE:
            assert run.run_id not in doomed, "a run that may still finish is never deleted"
        if not run.complete and not run.running and NOW - run.started_at > GRACE:
            assert run.run_id in doomed, "an abandoned incomplete run is garbage"


@settings(max_examples=300, deadline=None)
@given(histories(), policies)
def test_each_rule_keeps_what_it_promises(runs: list[RunState], policy: Retention) -> None:
    doomed = select_for_deletion(runs, policy, NOW, in_progress_grace=GRACE)
    complete = sorted((r for r in runs if r.complete), key=lambda r: (r.started_at, r.run_id))

    if policy.keep_last:
        for run in complete[-policy.keep_last:]:
            assert run.run_id not in doomed, f"keepLast {policy.keep_last} keeps {run.run_id}"
    if policy.max_age_days is not None:
        for run in complete:
            if NOW - run.started_at <= timedelta(days=policy.max_age_days):
                assert run.run_id not in doomed, "maxAgeDays keeps younger backups"

    def newest_in(runs_in: list[RunState]) -> RunState:
        return max(runs_in, key=lambda r: (r.started_at, r.run_id))

    def week(d: date) -> int:
        return (d.toordinal() - d.weekday()) // 7

    periods: dict[str, tuple[int | None, Callable[[date], int]]] = {
        "daily": (policy.daily, date.toordinal),
        "weekly": (policy.weekly, week),
        "monthly": (policy.monthly, lambda d: d.year * 12 + d.month),
    }
    for name, (count, period) in periods.items():
        if not count:
            continue
        buckets: dict[int, list[RunState]] = {}
        for run in complete:
            buckets.setdefault(period(run.started_at.date()), []).append(run)
        current = period(NOW.date())
        for key, members in buckets.items():
            if current - key < count:
                newest = newest_in(members)
                assert newest.run_id not in doomed, f"{name} keeps the newest of its period"


@settings(max_examples=300, deadline=None)
@given(histories(), policies)
def test_complete_backups_go_only_when_no_rule_keeps_them(
    runs: list[RunState], policy: Retention
) -> None:
    doomed = select_for_deletion(runs, policy, NOW, in_progress_grace=GRACE)
    kept = kept_by_rules(runs, policy, NOW)
    for run in runs:
        if run.complete and not run.running:
            assert (run.run_id in doomed) == (run.run_id not in kept)


@settings(max_examples=300, deadline=None)
@given(histories(), policies)
def test_applying_retention_twice_deletes_nothing_more(
    runs: list[RunState], policy: Retention
) -> None:
    doomed = select_for_deletion(runs, policy, NOW, in_progress_grace=GRACE)
    survivors = [r for r in runs if r.run_id not in doomed]
    assert select_for_deletion(survivors, policy, NOW, in_progress_grace=GRACE) == set()


@settings(max_examples=200, deadline=None)
@given(histories(), policies, st.integers(min_value=-12, max_value=14))
def test_invariants_hold_in_any_time_zone(
    runs: list[RunState], policy: Retention, hours: int
) -> None:
    tz = timezone(timedelta(hours=hours))
    doomed = select_for_deletion(runs, policy, NOW, in_progress_grace=GRACE, tz=tz)
    newest = _newest_complete(runs)
    if newest is not None:
        assert newest.run_id not in doomed
    assert not any(r.running and r.run_id in doomed for r in runs)


# ---------------------------------------------------------------------- worked examples


def _daily_history(days: int, *, hour: int = 2) -> list[RunState]:
    runs = []
    for back in range(days):
        started = (NOW - timedelta(days=back)).replace(hour=hour, minute=0, second=0)
        runs.append(RunState(f"{started.strftime('%Y%m%dT%H%M%SZ')}-aaaaaa", started, True))
    return runs


def test_keep_last_three_of_ten() -> None:
    runs = _daily_history(10)
    doomed = select_for_deletion(runs, _policy(keep_last=3), NOW)
    assert sorted(set(r.run_id for r in runs) - doomed) == sorted(r.run_id for r in runs[:3])


def test_gfs_seven_daily_four_weekly_keeps_eleven_or_fewer() -> None:
    runs = _daily_history(60)
    doomed = select_for_deletion(runs, _policy(daily=7, weekly=4), NOW)
    kept = [r for r in runs if r.run_id not in doomed]
    # 7 days, plus Sundays' (newest of their ISO week) of the 4 weeks, overlapping.
    assert 7 <= len(kept) <= 11
    assert all(NOW - r.started_at < timedelta(days=29) for r in kept)


def test_max_age_alone_keeps_exactly_the_young() -> None:
    runs = _daily_history(40)
    doomed = select_for_deletion(runs, _policy(max_age_days=14), NOW)
    assert {r.run_id for r in runs if NOW - r.started_at > timedelta(days=14)} == doomed


def test_only_old_backups_the_newest_survives_max_age() -> None:
    runs = _daily_history(5)
    later = NOW + timedelta(days=100)
    doomed = select_for_deletion(runs, _policy(max_age_days=30), later)
    assert set(r.run_id for r in runs) - doomed == {runs[0].run_id}


def test_incomplete_runs_in_progress_and_abandoned() -> None:
    fresh = RunState("20261127T020000Z-aaaaaa", NOW - timedelta(minutes=30), complete=False)
    stale = RunState("20261126T020000Z-bbbbbb", NOW - timedelta(days=1), complete=False)
    marked = RunState("20261120T020000Z-cccccc", NOW - timedelta(days=7), False, running=True)
    done = RunState("20261125T020000Z-dddddd", NOW - timedelta(days=2), complete=True)
    assert select_for_deletion([fresh, stale, marked, done], _policy(keep_last=1), NOW) == {
        stale.run_id
    }


def test_a_backup_a_restore_reads_is_kept_whatever_the_rules_say() -> None:
    runs = _daily_history(5)
    read = runs[3].run_id
    doomed = select_for_deletion(runs, _policy(keep_last=1), NOW, held={read})
    assert doomed == {r.run_id for r in runs[1:]} - {read}


def test_the_newest_database_dump_outlives_runs_without_one() -> None:
    """Targets changed to the configuration alone: keepLast 3 counted those runs,
    and after three of them every database dump was pruned."""
    runs = _daily_history(10)
    config_only = {r.run_id for r in runs[:4]}  # the four newest hold no dump
    runs = [RunState(r.run_id, r.started_at, True, has_dump=r.run_id not in config_only)
            for r in runs]
    doomed = select_for_deletion(runs, _policy(keep_last=3), NOW)
    kept = {r.run_id for r in runs} - doomed
    assert kept == {runs[0].run_id, runs[1].run_id, runs[2].run_id, runs[4].run_id}


def test_a_database_made_afresh_never_pushes_the_old_ones_backups_out() -> None:
    """A volume lost (or the tenant made again) and an empty database dumped every
    night: keepLast 3 deleted the old database's last backups after three nights.
    Its backups are kept, and counted by no rule; the new database's are pruned as
    ever. Runs whose manifest names no database (older ones) count as the newest's."""
    runs = _daily_history(12)
    new, old, legacy = runs[:5], runs[5:9], runs[9:]
    runs = [*(RunState(r.run_id, r.started_at, True, database="222") for r in new),
            *(RunState(r.run_id, r.started_at, True, database="111") for r in old),
            *legacy]
    doomed = select_for_deletion(runs, _policy(keep_last=3), NOW)
    assert doomed == {r.run_id for r in new[3:]} | {r.run_id for r in legacy}
    assert of_other_databases(runs) == sorted(r.run_id for r in old)
    # Before the new database's first backup the old one is simply the newest.
    assert of_other_databases(runs[5:]) == []
    assert select_for_deletion(runs[5:], _policy(keep_last=3), NOW) == (
        {runs[8].run_id} | {r.run_id for r in legacy})


def test_a_run_holds_a_dump_by_its_objects_names() -> None:
    prefix = "stackforge/shop/20261127T020000Z-aaaaaa/"
    listing = RunListing("20261127T020000Z-aaaaaa", NOW, objects=[
        StoredObject(prefix + "manifest.json", 10, NOW),
        StoredObject(prefix + "configuration.json", 5, NOW)])
    assert listing.complete and not listing.has_dump
    for name in ("postgres.dump", "postgres.dump.zst"):
        dumped = RunListing(listing.run_id, NOW, objects=[
            *listing.objects, StoredObject(prefix + name, 100, NOW)])
        assert dumped.has_dump


def test_no_rule_keeps_everything_complete() -> None:
    runs = _daily_history(10)
    assert select_for_deletion(runs, _policy(), NOW) == set()


def test_weeks_count_across_a_year_boundary() -> None:
    now = datetime(2027, 1, 4, 12, tzinfo=UTC)  # a Monday, ISO week 1 of 2027
    runs = [
        RunState("20261231T020000Z-aaaaaa", datetime(2026, 12, 31, 2, tzinfo=UTC), True),
        RunState("20261224T020000Z-bbbbbb", datetime(2026, 12, 24, 2, tzinfo=UTC), True),
        RunState("20261217T020000Z-cccccc", datetime(2026, 12, 17, 2, tzinfo=UTC), True),
        RunState("20270104T020000Z-dddddd", datetime(2027, 1, 4, 2, tzinfo=UTC), True),
    ]
    doomed = select_for_deletion(runs, _policy(weekly=3), now)
    assert doomed == {"20261217T020000Z-cccccc"}
