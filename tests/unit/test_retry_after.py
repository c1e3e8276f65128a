"""Retry-After's two forms: seconds, or an HTTP date."""

from __future__ import annotations

from datetime import UTC, datetime

from stackforge_operator.retry_after import retry_after_seconds


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("5") == 5.0
    assert retry_after_seconds("Fri, 27 Nov 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Fri, 27 Nov 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
