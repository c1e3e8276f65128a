"""Now, as the tenants' suspend windows see it.

``STACKFORGE_TEST_CLOCK_FILE`` names a file holding an ISO-8601 time that stands
for now while it holds one: the tests move a tenant to its windows' edges
instead of waiting for them. Unset in production; only the suspend windows
read this clock (backups, drills and conditions keep the real one).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path


def overridden() -> bool:
    """Whether a test may move this clock at will (so nothing due can be foreseen)."""
    return bool(os.environ.get("STACKFORGE_TEST_CLOCK_FILE"))


def now() -> datetime:
    override = os.environ.get("STACKFORGE_TEST_CLOCK_FILE")
    if override:
        try:
            text = Path(override).read_text().strip()
        except OSError:
            text = ""
        if text:
            return datetime.fromisoformat(text).astimezone(UTC)
    return datetime.now(UTC)
