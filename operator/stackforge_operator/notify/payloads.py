"""Pure: a message as Slack incoming-webhook JSON or as the generic webhook's JSON."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

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


def title(change: Change) -> str:
    return _TITLES.get(change.event.value, change.event.value)


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
