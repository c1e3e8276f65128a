"""Opened/resolved messages from the incidents notified before and the incidents now (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stackforge_operator.models.common import SecretKeyRef
from stackforge_operator.models.tenant import (
    NotificationEvent,
    NotificationsSpec,
    OpenIncident,
    SlackChannel,
)
from stackforge_operator.notify.changes import MAX_OPEN, State, diff, enabled_events, farewell
from stackforge_operator.notify.incidents import Incident

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ALL = frozenset(NotificationEvent)
E = NotificationEvent


def incident(key: str, event: E, ago: timedelta = timedelta(hours=1)) -> Incident:
    return Incident(key, event, NOW - ago, f"summary of {key}")


def test_a_new_incident_is_opened_and_remembered() -> None:
    remember, changes = diff([], [incident("BackupFailed/p", E.BACKUP_FAILED)], ALL, NOW)
    assert [(c.state, c.key) for c in changes] == [(State.OPENED, "BackupFailed/p")]
    assert changes[0].summary == "summary of BackupFailed/p" and changes[0].at == NOW
    assert remember == [OpenIncident(key="BackupFailed/p", event=E.BACKUP_FAILED,
                                     since=NOW - timedelta(hours=1))]


def test_a_known_incident_says_nothing_again() -> None:
    before = [OpenIncident(key="BackupFailed/p", event=E.BACKUP_FAILED,
                           since=NOW - timedelta(hours=2))]
    # Even if the start it is detected with moved (a second failed run), it is one incident.
    remember, changes = diff(before, [incident("BackupFailed/p", E.BACKUP_FAILED)], ALL, NOW)
    assert changes == [] and remember == before


def test_a_gone_incident_is_resolved_once() -> None:
    before = [OpenIncident(key="DrillFailed/monthly", event=E.DRILL_FAILED, since=NOW)]
    remember, changes = diff(before, [], ALL, NOW)
    assert remember == []
    assert [(c.state, c.key, c.event) for c in changes] == [
        (State.RESOLVED, "DrillFailed/monthly", E.DRILL_FAILED)]
    assert changes[0].summary == "DrillFailed (monthly) resolved"
    assert diff(remember, [], ALL, NOW) == ([], [])


def test_an_undecided_incident_keeps_an_announced_one_open_and_opens_none() -> None:
    """Its condition Unknown (the bucket unreadable for a moment): neither
    "resolved" nor, once the bucket answers, a second "opened"."""
    before = [OpenIncident(key="BackupStale/p", event=E.BACKUP_STALE,
                           since=NOW - timedelta(hours=30))]
    unknown = Incident("BackupStale/p", E.BACKUP_STALE, NOW, "unknown", undecided=True)
    assert diff(before, [unknown], ALL, NOW) == (before, [])
    # Not announced before: it opens nothing, and nothing is remembered.
    assert diff([], [unknown], ALL, NOW) == ([], [])


def test_unsubscribed_events_are_neither_sent_nor_remembered() -> None:
    only_backups = frozenset({E.BACKUP_FAILED})
    found = [incident("BackupFailed/p", E.BACKUP_FAILED), incident("TenantNotReady",
                                                                    E.TENANT_NOT_READY)]
    remember, changes = diff([], found, only_backups, NOW)
    assert [c.key for c in changes] == ["BackupFailed/p"]
    assert [i.key for i in remember] == ["BackupFailed/p"]


def test_unsubscribing_forgets_silently() -> None:
    before = [OpenIncident(key="TenantNotReady", event=E.TENANT_NOT_READY, since=NOW)]
    remember, changes = diff(before, [incident("TenantNotReady", E.TENANT_NOT_READY)],
                             frozenset({E.BACKUP_FAILED}), NOW)
    assert remember == [] and changes == []


def test_enabled_events_default_to_all_and_need_a_channel() -> None:
    assert enabled_events(None) == frozenset()
    ref = SecretKeyRef(name="alerts", key="url")
    assert enabled_events(NotificationsSpec(slack=SlackChannel(webhook_url_secret_ref=ref))) == ALL
    chosen = NotificationsSpec(slack=SlackChannel(webhook_url_secret_ref=ref),
                               events=[E.DRILL_FAILED])
    assert enabled_events(chosen) == frozenset({E.DRILL_FAILED})


def test_at_most_max_open_and_announced_ones_keep_their_place() -> None:
    before = [OpenIncident(key="BackupFailed/zz", event=E.BACKUP_FAILED, since=NOW)]
    found = [incident(f"BackupFailed/p{n:03}", E.BACKUP_FAILED) for n in range(MAX_OPEN + 5)]
    found.append(incident("BackupFailed/zz", E.BACKUP_FAILED))
    remember, changes = diff(before, found, ALL, NOW)
    assert len(remember) == MAX_OPEN and "BackupFailed/zz" in {i.key for i in remember}
    assert len(changes) == MAX_OPEN - 1
    assert all(c.state is State.OPENED for c in changes)


def test_a_deleted_tenant_resolves_what_it_announced_saying_why() -> None:
    before = [OpenIncident(key="TenantIsolated", event=E.TENANT_ISOLATED, since=NOW),
              OpenIncident(key="BackupFailed/p", event=E.BACKUP_FAILED, since=NOW)]
    said = farewell(before, ALL, NOW)
    assert [(c.state, c.key) for c in said] == [
        (State.RESOLVED, "BackupFailed/p"), (State.RESOLVED, "TenantIsolated")]
    assert said[0].summary == "BackupFailed (p) resolved: tenant deleted"
    # Unsubscribed meanwhile: not resolved ("resolved" of what was never said is untrue).
    assert farewell(before, {E.TENANT_ISOLATED}, NOW)[0].key == "TenantIsolated"
    assert len(farewell(before, {E.TENANT_ISOLATED}, NOW)) == 1
    assert farewell([], ALL, NOW) == []
