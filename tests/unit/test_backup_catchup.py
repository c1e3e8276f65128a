"""The scheduled backup a suspend window swallowed (backup_catchup.py, pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from stackforge_operator import backup_catchup
from stackforge_operator.builders import backup as builders
from stackforge_operator.models.backup import BackupPolicySpec
from stackforge_operator.models.tenant import SuspendWindow
from tests.unit.builders.runners import POLICY, _spec
from tests.unit.builders.tenants import tenant

# Weeknights 20:00-07:00 in Berlin (UTC+1): Tuesday 19:00 to Wednesday 06:00 UTC.
WEEKNIGHTS = SuspendWindow(start="0 20 * * 1-5", end="0 7 * * 1-5", time_zone="Europe/Berlin")
NIGHTLY = "0 2 * * *"  # Berlin: 01:00 UTC, inside every weeknight window
FIRE = datetime(2026, 12, 2, 1, tzinfo=UTC)  # Wednesday
CLOSED = datetime(2026, 12, 2, 6, tzinfo=UTC)
DEADLINE = timedelta(seconds=builders.STARTING_DEADLINE_SECONDS)


def _missed(now: datetime, last_attempt: datetime | None = None,
            windows: tuple[SuspendWindow, ...] = (WEEKNIGHTS,), when: str = NIGHTLY
            ) -> datetime | None:
    return backup_catchup.missed_fire(windows, when, "Europe/Berlin", now, last_attempt,
                                      DEADLINE)


def test_the_run_a_window_swallowed_is_due_once_it_has_closed() -> None:
    assert _missed(CLOSED) == FIRE
    assert _missed(CLOSED + timedelta(hours=5)) == FIRE  # still, until something runs
    # A run (or backup) since the fire, whatever its result: nothing is due.
    assert _missed(CLOSED, last_attempt=CLOSED + timedelta(seconds=1)) is None
    assert _missed(CLOSED, last_attempt=FIRE) is None
    assert _missed(CLOSED, last_attempt=FIRE - timedelta(days=1)) == FIRE


def test_nothing_is_due_while_the_window_is_open_or_without_one() -> None:
    assert _missed(CLOSED - timedelta(seconds=1)) is None
    assert _missed(CLOSED, windows=()) is None
    # "1-5" ends: from Friday 20:00 the window stays open until Monday 07:00.
    assert _missed(datetime(2026, 12, 5, 9, tzinfo=UTC)) is None
    assert _missed(datetime(2026, 12, 7, 6, tzinfo=UTC)) == datetime(2026, 12, 7, 1, tzinfo=UTC)
    # A fire outside every window ran, or failed, as the CronJob's own.
    evenings = SuspendWindow(start="0 20 * * *", end="0 23 * * *", time_zone="Europe/Berlin")
    assert _missed(CLOSED, windows=(evenings,)) is None
    assert _missed(datetime(2026, 12, 2, 15, tzinfo=UTC), when="0 12 * * *") is None


def test_a_run_missed_by_less_than_the_starting_deadline_is_the_cronjobs() -> None:
    """Resumed, the CronJob controller starts it itself: the operator must not too."""
    late = "30 6 * * *"  # Berlin 06:30, UTC 05:30: half an hour before the window closes
    assert _missed(CLOSED, when=late) is None
    assert _missed(CLOSED + timedelta(minutes=31), when=late) == datetime(
        2026, 12, 2, 5, 30, tzinfo=UTC)


def test_one_request_per_fire() -> None:
    assert backup_catchup.request_for(FIRE) == "missed-20261202T0100Z"
    assert builders.manual_job_name("nightly", backup_catchup.request_for(FIRE)) != \
        builders.manual_job_name("nightly", backup_catchup.request_for(
            FIRE + timedelta(days=1)))


def test_the_cronjob_rests_while_the_database_is_stopped() -> None:
    spec = BackupPolicySpec.model_validate(_spec("backuppolicy-acme.yaml"))
    t = tenant({})

    def suspended(**kwargs: bool) -> bool:
        made = builders.cron_job(POLICY, t.namespace, spec, replace(
            t, writes_stopped=kwargs.pop("writes_stopped", False)), NIGHTLY, "Etc/UTC",
            **kwargs)
        assert made["spec"]["startingDeadlineSeconds"] == builders.STARTING_DEADLINE_SECONDS
        return bool(made["spec"]["suspend"])

    assert not suspended()
    assert suspended(database_stopped=True)
    assert suspended(writes_stopped=True)


def test_a_run_is_not_made_up_when_the_cronjob_would_rest_for_its_own_reasons() -> None:
    """One rule for the CronJob and the made-up run: a suspended policy, or a
    tenant whose database a recovery or a bootstrap is replacing, starts neither
    (a made-up run started every weekday morning for a suspended policy)."""
    spec = BackupPolicySpec.model_validate(_spec("backuppolicy-acme.yaml"))
    held_spec = spec.model_copy(update={"suspend": True})
    t = tenant({})
    assert not builders.scheduled_runs_held(spec, t, database_stopped=False)
    assert builders.scheduled_runs_held(held_spec, t, database_stopped=False)
    assert builders.scheduled_runs_held(spec, replace(t, writes_stopped=True),
                                        database_stopped=False)
    assert builders.scheduled_runs_held(spec, t, database_stopped=True)
    for policy, tenant_now, stopped in ((held_spec, t, False),
                                        (spec, replace(t, writes_stopped=True), False)):
        made = builders.cron_job(POLICY, t.namespace, policy, tenant_now, NIGHTLY, "Etc/UTC",
                                 database_stopped=stopped)
        assert made["spec"]["suspend"] is True


def test_a_window_that_cannot_be_kept_makes_nothing_up_and_raises_nothing() -> None:
    """A window whose date never comes raised in every pass of the policy (the
    tenant stalls on it and says so)."""
    never = SuspendWindow(start="0 20 30 2 *", end="0 7 * * 1-5", time_zone="Europe/Berlin")
    assert _missed(CLOSED, windows=(WEEKNIGHTS, never)) is None


def test_a_policys_longest_name_makes_job_names_the_api_server_takes() -> None:
    """A policy's name may be 63 long: past 45 its CronJob's name was refused
    (no scheduled backup at all), past 41 every on-demand Job's."""
    longest = "p" * 63
    assert len(builders.cron_job_name(longest)) <= 52
    names = {builders.manual_job_name(longest, request) for request in ("r1", "r2")}
    assert len(names) == 2 and all(len(n) <= 63 for n in names)
    assert len({builders.cron_job_name(longest), builders.cron_job_name("p" * 62)}) == 2
    # A name that fits is as it always was.
    assert builders.cron_job_name("nightly") == "backup-nightly"
    assert builders.manual_job_name("nightly", "r1").startswith("backup-nightly-now-")
