"""Slack and generic webhook JSON (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stackforge_operator.models.tenant import NotificationEvent
from stackforge_operator.notify import payloads
from stackforge_operator.notify.changes import Change, State

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def change(state: State) -> Change:
    return Change(state, "BackupFailed/nightly", NotificationEvent.BACKUP_FAILED,
                  NOW - timedelta(hours=1), "backup policy nightly failed: run x", NOW)


def test_slack_text_and_channel_override() -> None:
    opened = payloads.slack("acme", change(State.OPENED), "#stackforge-alerts")
    assert opened == {"text": ":red_circle: *[acme] Backup failed*: backup policy nightly "
                              "failed: run x", "channel": "#stackforge-alerts"}
    resolved = payloads.slack("acme", change(State.RESOLVED))
    assert set(resolved) == {"text"}
    assert "Resolved: Backup failed" in resolved["text"] and "BackupFailed/nightly" in resolved[
        "text"]


def test_webhook_json() -> None:
    body = payloads.webhook("acme", change(State.OPENED))
    assert body == {
        "id": body["id"], "event": "BackupFailed", "tenant": "acme",
        "incident": "BackupFailed/nightly", "state": "opened",
        "summary": "backup policy nightly failed: run x",
        "since": "2026-11-27T11:00:00Z", "timestamp": "2026-11-27T12:00:00Z",
    }


def test_ids_are_stable_and_distinguish_opened_from_resolved() -> None:
    opened, resolved = change(State.OPENED), change(State.RESOLVED)
    assert payloads.message_id("acme", opened) == payloads.message_id("acme", opened)
    assert payloads.message_id("acme", opened) != payloads.message_id("acme", resolved)
    assert payloads.message_id("acme", opened) != payloads.message_id("other", opened)
