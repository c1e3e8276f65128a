"""Slack and generic webhook JSON, emails, SMS texts and fields (pure)."""

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


def test_an_email_per_message_threads_the_resolution_under_the_opening() -> None:
    opened = payloads.email("acme", change(State.OPENED), "alerts@sf.io",
                            ["ops@stackforge.io", "oncall@stackforge.io"])
    assert opened["Subject"] == "[StackForge] [acme] Backup failed"
    assert opened["From"] == "alerts@sf.io"
    assert opened["To"] == "ops@stackforge.io, oncall@stackforge.io"
    assert opened["X-StackForge-Incident"] == "BackupFailed/nightly"
    assert opened["Date"] == "Fri, 27 Nov 2026 12:00:00 +0000"
    body = opened.get_content()
    assert "backup policy nightly failed: run x" in body and "2026-11-27T11:00:00Z" in body
    resolved = payloads.email("acme", change(State.RESOLVED), "alerts@sf.io",
                              ["ops@stackforge.io"])
    assert resolved["Subject"] == "[StackForge] [acme] Resolved: Backup failed"
    assert resolved["In-Reply-To"] == resolved["References"] == opened["Message-ID"]
    assert resolved["Message-ID"] != opened["Message-ID"]
    # Stable: the same message twice has the same id (receivers can drop the copy).
    again = payloads.email("acme", change(State.OPENED), "alerts@sf.io", ["x@y.io"])
    assert again["Message-ID"] == opened["Message-ID"]


def test_a_summary_with_line_breaks_stays_in_the_body() -> None:
    broken = Change(State.OPENED, "TenantNotReady", NotificationEvent.TENANT_NOT_READY, NOW,
                    "line one\nBcc: someone@evil.example\n", NOW)
    message = payloads.email("acme", broken, "alerts@sf.io", ["ops@stackforge.io"])
    assert message["Bcc"] is None and "Bcc: someone@evil.example" in message.get_content()


def test_an_sms_is_one_line_of_two_segments_at_most() -> None:
    long = Change(State.OPENED, "TenantNotReady", NotificationEvent.TENANT_NOT_READY, NOW,
                  "Ready False:\n" + "x" * 500, NOW)
    text = payloads.sms_text("acme", long)
    assert text.startswith("StackForge [acme] Tenant not Ready: Ready False: x")
    assert len(text) == payloads.SMS_MAX_CHARS and "\n" not in text and text.endswith("…")
    assert payloads.sms_text("acme", change(State.RESOLVED)) == (
        "StackForge [acme] Resolved: Backup failed (BackupFailed/nightly)")


def test_sms_fields_use_the_providers_names_and_keep_the_message_over_credentials() -> None:
    names = {"to": "to", "from": "from", "body": "text"}
    fields = payloads.sms_fields(names, "+15550001111", "+15550002222", "hello",
                                 {"api_key": "k", "api_secret": "s", "text": "overwrite?"})
    assert fields == {"api_key": "k", "api_secret": "s", "to": "+15550002222",
                      "from": "+15550001111", "text": "hello"}
