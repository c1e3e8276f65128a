"""Run ids: ``20261127T020000Z-<suffix>``, sortable by start time and parseable back."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from stackforge_operator.models.common import RUN_ID_PATTERN

_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
# The suffix keeps two runs started in the same second apart: random hex by
# default, or something the caller derives (a Job's name hash).
RUN_ID_RE = re.compile(RUN_ID_PATTERN)


def new_run_id(now: datetime | None = None) -> str:
    when = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{when.strftime(_TIME_FORMAT)}-{secrets.token_hex(3)}"


def is_run_id(text: str) -> bool:
    return RUN_ID_RE.match(text) is not None


def run_started_at(run_id: str) -> datetime | None:
    """The start time encoded in a run id, or None when ``run_id`` is not one of ours."""
    match = RUN_ID_RE.match(run_id)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:  # e.g. month 13: looks like a run id, is not one
        return None
