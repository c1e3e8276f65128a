"""Pure: a message as Slack incoming-webhook JSON, the generic webhook's JSON, an
email, or an SMS's text and fields."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from stackforge_operator.models.tenant import NotificationEvent
from stackforge_operator.notify.changes import Change, State

_TITLES = {
    "BackupFailed": "Backup failed",
    "BackupStale": "Backup stale",
    "ArchivingFailed": "WAL archiving failing",
    "DrillFailed": "DR drill failed",
    "CertificateExpiring": "Certificate expiring",
    "TenantNotReady": "Tenant not Ready",
    "TenantRecovering": "Database recovery in progress",
    "RecoveryFailed": "Database recovery failed",
}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def message_id(tenant: str, change: Change) -> str:
    """Stable per (tenant, incident, start, state): receivers can drop a duplicate by it."""
    raw = f"{tenant}\n{change.key}\n{_iso(change.since)}\n{change.state.value}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def event_title(event: NotificationEvent) -> str:
    return _TITLES.get(event.value, event.value)


def title(change: Change) -> str:
    return event_title(change.event)


def slack(tenant: str, change: Change, channel: str | None = None) -> dict[str, Any]:
    """Slack incoming webhook: ``text`` (mrkdwn), and ``channel`` when the tenant overrides it."""
    if change.state is State.OPENED:
        text = f":red_circle: *[{tenant}] {title(change)}*: {change.summary}"
    else:
        text = (f":white_check_mark: *[{tenant}] Resolved: {title(change)}* "
                f"(`{change.key}`, open since {_iso(change.since)})")
    payload: dict[str, Any] = {"text": text}
    if channel:
        payload["channel"] = channel
    return payload


def webhook(tenant: str, change: Change) -> dict[str, Any]:
    """The generic webhook's JSON: one flat object per message."""
    return {
        "id": message_id(tenant, change),
        "event": change.event.value,
        "tenant": tenant,
        "incident": change.key,
        "state": change.state.value,
        "summary": change.summary,
        "since": _iso(change.since),
        "timestamp": _iso(change.at),
    }


# Where the messages' identifiers live (RFC 5322 wants a domain-like right side).
MESSAGE_ID_DOMAIN = "stackforge-operator.invalid"
# Two SMS segments at most: a page that costs one or two messages, not ten.
SMS_MAX_CHARS = 320


def _mail_id(tenant: str, change: Change, state: State) -> str:
    opened = Change(state, change.key, change.event, change.since, change.summary, change.at)
    return f"<{message_id(tenant, opened)}@{MESSAGE_ID_DOMAIN}>"


def email(tenant: str, change: Change, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """One email to every recipient. Its Message-ID is the message's stable id, and a
    resolution answers the opening (In-Reply-To): mail clients thread an incident."""
    message = EmailMessage()
    if change.state is State.OPENED:
        message["Subject"] = f"[StackForge] [{tenant}] {title(change)}"
        lines = [f"{title(change)} on tenant {tenant}.", "", change.summary]
    else:
        message["Subject"] = f"[StackForge] [{tenant}] Resolved: {title(change)}"
        message["In-Reply-To"] = message["References"] = _mail_id(tenant, change, State.OPENED)
        lines = [f"Resolved: {title(change)} on tenant {tenant}."]
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(change.at.astimezone(UTC))
    message["Message-ID"] = _mail_id(tenant, change, change.state)
    message["X-StackForge-Tenant"] = tenant
    message["X-StackForge-Incident"] = change.key
    message["X-StackForge-State"] = change.state.value
    lines += ["", f"Event:    {change.event.value}", f"Incident: {change.key}",
              f"Open since: {_iso(change.since)}", f"At:       {_iso(change.at)}"]
    message.set_content("\n".join(lines) + "\n")
    return message


def sms_text(tenant: str, change: Change) -> str:
    """The text of an SMS: short, the summary cut to two segments."""
    if change.state is State.OPENED:
        text = f"StackForge [{tenant}] {title(change)}: {change.summary}"
    else:
        text = f"StackForge [{tenant}] Resolved: {title(change)} ({change.key})"
    text = " ".join(text.split())  # no line breaks: some gateways refuse them
    return text if len(text) <= SMS_MAX_CHARS else text[:SMS_MAX_CHARS - 1] + "…"


def sms_fields(names: Mapping[str, str], sender: str, recipient: str, text: str,
               credentials: Mapping[str, str]) -> dict[str, str]:
    """A request's fields: the provider's ``names`` for to/from/body, and the
    credentials it wants as fields (they cannot overwrite the message's)."""
    message = {names["to"]: recipient, names["from"]: sender, names["body"]: text}
    return {**credentials, **message}
