"""The verdict: every check passed and both objectives met, or Failed with reasons.

Pure functions over what the run measured; the runner does the measuring.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from stackforge_operator.models.drill import CheckResult, Verdict

MAX_CHECK_TEXT = 1024  # CheckResult's expected/actual/message limit (status schema)
MAX_CHECK_NAME = 253


class Reason(enum.StrEnum):
    """Why a drill failed; the first of these that applies is the run's ``reason``."""

    BACKUP_NOT_FOUND = "BackupNotFound"
    CHECKSUM_MISMATCH = "ChecksumMismatch"
    RESTORE_FAILED = "RestoreFailed"
    CHECK_FAILED = "CheckFailed"
    RTO_MISSED = "RTOMissed"
    RPO_MISSED = "RPOMissed"


# A corrupted object usually also breaks pg_restore: naming the corruption is
# the more useful answer, so it outranks the restore error it caused.
_PRIORITY: list[str] = [
    Reason.BACKUP_NOT_FOUND,
    Reason.CHECKSUM_MISMATCH,
    Reason.RESTORE_FAILED,
    Reason.CHECK_FAILED,
    Reason.RTO_MISSED,
    Reason.RPO_MISSED,
]


@dataclass(frozen=True)
class Objectives:
    """RTO/RPO to meet, in seconds; None: not graded."""

    rto_seconds: float | None = None
    rpo_seconds: float | None = None


@dataclass(frozen=True)
class Failure:
    """A step that stopped the run (no backup, corrupted dump, restore error, S3...)."""

    reason: str
    message: str


@dataclass(frozen=True)
class Grade:
    verdict: Verdict
    reasons: list[str]
    message: str
    rto_met: bool | None
    rpo_met: bool | None

    @property
    def reason(self) -> str | None:
        return self.reasons[0] if self.reasons else None


def elapsed_seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def whole_seconds(seconds: float | None) -> int | None:
    """Seconds as the status reports them: rounded up, never below 0.

    Rounding up keeps the integer consistent with the verdict: for a whole
    objective ``o``, ``seconds <= o`` exactly when ``ceil(seconds) <= o``.
    """
    if seconds is None:
        return None
    return max(0, math.ceil(round(seconds, 6)))


def clip(text: str | None, limit: int = MAX_CHECK_TEXT) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def _met(measured: float | None, objective: float | None) -> bool | None:
    if measured is None or objective is None:
        return None
    return measured <= objective


def _describe_check(check: CheckResult) -> str:
    if check.message:
        return f"{check.kind.value} {check.name}: {check.message}"
    return f"{check.kind.value} {check.name}: expected {check.expected}, got {check.actual}"


def grade(
    checks: Sequence[CheckResult],
    *,
    rto_seconds: float | None,
    rpo_seconds: float | None,
    objectives: Objectives,
    failures: Sequence[Failure] = (),
) -> Grade:
    """Passed only with no failure, every check passed, and both objectives met.

    An objective counts as missed only when it was set and its figure was
    measured: RTO is not measured when the restore never got verified, and
    that run has already failed for the reason that stopped it. An RPO
    objective of a run that failed nothing else yet measured no recovery point
    is missed: it cannot be confirmed.
    """
    # Messages give the figures as status does (whole seconds, rounded up), so a
    # message never shows "60.0s exceeds 60s" beside a status of 61.
    rto_met = _met(rto_seconds, objectives.rto_seconds)
    rpo_met = _met(rpo_seconds, objectives.rpo_seconds)
    found: dict[str, str] = {}
    for failure in failures:
        found.setdefault(failure.reason, failure.message)
    failed = [c for c in checks if not c.passed]
    if failed:
        shown = "; ".join(_describe_check(c) for c in failed[:3])
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        found.setdefault(
            Reason.CHECK_FAILED, f"{len(failed)} of {len(checks)} checks failed: {shown}{more}"
        )
    if rto_met is False:
        found[Reason.RTO_MISSED] = (
            f"RTO {whole_seconds(rto_seconds)}s exceeds the objective of "
            f"{objectives.rto_seconds:g}s"
        )
    if rpo_met is False:
        found[Reason.RPO_MISSED] = (
            f"RPO {whole_seconds(rpo_seconds)}s exceeds the objective of "
            f"{objectives.rpo_seconds:g}s"
        )
    if not found and objectives.rpo_seconds is not None and rpo_seconds is None:
        # Restored and checked, yet no recovery point to measure (a physical
        # restore whose server names no replayed transaction): an objective that
        # cannot be confirmed is not met.
        rpo_met = False
        found[Reason.RPO_MISSED] = (
            f"RPO not measured: the restored database gives no recovery point, so the "
            f"objective of {objectives.rpo_seconds:g}s cannot be confirmed")
    ranked = sorted(found, key=lambda r: _PRIORITY.index(r) if r in _PRIORITY else -1)
    if not ranked:
        parts = [f"all {len(checks)} checks passed"]
        if rto_seconds is not None:
            parts.append(f"RTO {whole_seconds(rto_seconds)}s" + _within(objectives.rto_seconds))
        if rpo_seconds is not None:
            parts.append(f"RPO {whole_seconds(rpo_seconds)}s" + _within(objectives.rpo_seconds))
        return Grade(Verdict.PASSED, [], "; ".join(parts), rto_met, rpo_met)
    message = "; ".join(found[r] for r in ranked)
    return Grade(Verdict.FAILED, ranked, message, rto_met, rpo_met)


def _within(objective: float | None) -> str:
    return f" (objective {objective:g}s)" if objective is not None else ""
