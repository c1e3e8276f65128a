"""HTTP's Retry-After header: when a server that refused (429, 503) asks to be asked
again. Read by the notification sender (the receivers') and kube.py (the API
server's, or a proxy's in front of it)."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (delta-seconds or an HTTP date) in seconds; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
