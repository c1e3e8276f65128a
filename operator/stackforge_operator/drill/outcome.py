"""What a drill run reports: the result line for the operator and the full JSON report.

The result line goes to stdout and to the termination-message file, which
Kubernetes cuts at 4096 bytes: ``to_json_line`` keeps it under that by
dropping passing checks first, then failing ones (the summary counts them
all, and the report in S3 lists every check).  Field names follow the
DRDrill status (``DrillResult``) so the operator can copy them across.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stackforge_operator import runner_process
from stackforge_operator.backup.manifest import Manifest
from stackforge_operator.drill.grading import Grade, Objectives, whole_seconds
from stackforge_operator.models.drill import CheckResult, Verdict

# Kubernetes' termination message limit is 4096 bytes; leave room for the newline.
TERMINATION_MESSAGE_LIMIT = 4000
MAX_LINE_MESSAGE = 1024
MAX_LINE_LOG_TAIL = 1024
REPORT_KIND = "StackForgeDrillReport"


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _check_json(check: CheckResult) -> dict[str, Any]:
    data: dict[str, Any] = check.model_dump(by_alias=True, exclude_none=True, mode="json")
    return data


def failing_first(checks: list[CheckResult]) -> list[CheckResult]:
    """Failing checks first, each group in its original order."""
    return [c for c in checks if not c.passed] + [c for c in checks if c.passed]


@dataclass
class RestoreFacts:
    """How the dump went into the database."""

    seconds: float
    size_bytes: int
    sha256: str
    exit_code: int | None
    stderr_tail: str = ""


@dataclass(frozen=True)
class PhysicalFacts:
    """What a Physical drill restored: its repository, to what moment (None: the latest)."""

    location: str
    target: datetime | None

    @property
    def target_text(self) -> str:
        return self.target.isoformat() if self.target else "latest"


@dataclass
class DrillOutcome:
    """One drill run's result; never raised, always returned."""

    tenant: str
    run_id: str
    grade: Grade
    started_at: datetime
    finished_at: datetime
    selection: str
    objectives: Objectives = field(default_factory=Objectives)
    manifest: Manifest | None = None
    recovery_point: datetime | None = None
    verified_at: datetime | None = None
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    checks: list[CheckResult] = field(default_factory=list)
    restore: RestoreFacts | None = None
    report_location: str | None = None
    report_error: str | None = None
    tools: dict[str, str] = field(default_factory=dict)
    physical: PhysicalFacts | None = None

    @property
    def verdict(self) -> Verdict:
        return self.grade.verdict

    @property
    def passed(self) -> bool:
        return self.grade.verdict == Verdict.PASSED

    @property
    def backup_id(self) -> str | None:
        return self.manifest.run_id if self.manifest else None

    # -- the result line ---------------------------------------------------------

    def _line_base(self) -> dict[str, Any]:
        manifest = self.manifest
        data: dict[str, Any] = {
            "verdict": self.grade.verdict.value,
            "reason": self.grade.reason,
            "reasons": self.grade.reasons,
            "message": self.grade.message,
            "tenant": self.tenant,
            "runId": self.run_id,
            "backupId": self.backup_id,
            "backupLocation": (manifest.location if manifest else
                               self.physical.location if self.physical else None),
            "recoveryTarget": self.physical.target_text if self.physical else None,
            "recoveryPointTime": _iso(self.recovery_point),
            "startTime": _iso(self.started_at),
            "completionTime": _iso(self.finished_at),
            "rtoSeconds": whole_seconds(self.rto_seconds),
            "rpoSeconds": whole_seconds(self.rpo_seconds),
            "rtoObjectiveSeconds": whole_seconds(self.objectives.rto_seconds),
            "rpoObjectiveSeconds": whole_seconds(self.objectives.rpo_seconds),
            "rtoMet": self.grade.rto_met,
            "rpoMet": self.grade.rpo_met,
            "reportLocation": self.report_location,
            "reportError": self.report_error,
        }
        if self.restore is not None and self.restore.stderr_tail and not self.passed:
            data["restoreLogTail"] = self.restore.stderr_tail
        passed = sum(c.passed for c in self.checks)
        data["checkSummary"] = {
            "total": len(self.checks), "passed": passed, "failed": len(self.checks) - passed,
        }
        return {k: v for k, v in data.items() if v is not None}

    def to_json_line(self, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
        """One line of JSON, at most ``limit`` bytes (ASCII: escapes keep it one byte a char)."""
        data = self._line_base()
        data["message"] = _cut(data["message"], MAX_LINE_MESSAGE)
        if "restoreLogTail" in data:
            data["restoreLogTail"] = _tail(data["restoreLogTail"], MAX_LINE_LOG_TAIL)
        checks = [_check_json(c) for c in failing_first(self.checks)]

        def line_with(keep: int) -> str:
            data["checks"] = checks[:keep]
            data.pop("checksOmitted", None)
            if keep < len(checks):
                data["checksOmitted"] = len(checks) - keep
            return _dumps(data)

        # The line grows with every check kept: binary-search the most that fit.
        low, high = 0, len(checks)
        while low < high:
            middle = (low + high + 1) // 2
            if len(line_with(middle)) <= limit:
                low = middle
            else:
                high = middle - 1
        line = line_with(low)
        if len(line) <= limit:
            return line
        # Too long without any check: shorten the free text.
        data.pop("restoreLogTail", None)
        line = _dumps(data)
        while len(line) > limit and len(data["message"]) > 16:
            # Escapes make a character up to 6 bytes: cut, measure, repeat.
            overflow = len(line) - limit
            data["message"] = _cut(data["message"], max(16, len(data["message"]) - overflow - 8))
            line = _dumps(data)
        return line

    # -- the report --------------------------------------------------------------

    def to_report(self) -> dict[str, Any]:
        """The evidence stored in S3: what, when, which backup, every check, RTO, RPO, verdict."""
        manifest = self.manifest
        dump = manifest.artifact("postgres") if manifest else None
        backup: dict[str, Any] | None = None
        if manifest is not None:
            backup = {
                "id": manifest.run_id,
                "location": manifest.location,
                "startedAt": _iso(manifest.started_at),
                "finishedAt": _iso(manifest.finished_at),
                "snapshotTime": _iso(manifest.postgres.snapshot_time)
                if manifest.postgres else None,
                "recoveryPointTime": _iso(self.recovery_point),
                "database": manifest.postgres.database if manifest.postgres else None,
                "postgresVersion": manifest.postgres.server_version if manifest.postgres else None,
                "dump": {"key": dump.key, "sizeBytes": dump.size_bytes, "sha256": dump.sha256}
                if dump else None,
            }
        elif self.physical is not None:
            backup = {
                "method": "Physical",
                "location": self.physical.location,
                "recoveryTarget": self.physical.target_text,
                "recoveryPointTime": _iso(self.recovery_point),
            }
        restore = None
        if self.restore is not None:
            restore = {
                "seconds": round(self.restore.seconds, 3),
                "bytesRead": self.restore.size_bytes,
                "sha256": self.restore.sha256,
                "exitCode": self.restore.exit_code,
                "stderrTail": self.restore.stderr_tail or None,
            }
        return {
            "kind": REPORT_KIND,
            "formatVersion": 1,
            "tenant": self.tenant,
            "runId": self.run_id,
            "verdict": self.grade.verdict.value,
            "reason": self.grade.reason,
            "reasons": self.grade.reasons,
            "message": self.grade.message,
            "selection": self.selection,
            "startedAt": _iso(self.started_at),
            "verifiedAt": _iso(self.verified_at),
            "finishedAt": _iso(self.finished_at),
            "backup": backup,
            "restore": restore,
            "rto": {
                "seconds": _round(self.rto_seconds),
                "objectiveSeconds": self.objectives.rto_seconds,
                "met": self.grade.rto_met,
                "measuredFrom": "startedAt", "measuredTo": "verifiedAt",
            },
            "rpo": {
                "seconds": _round(self.rpo_seconds),
                "objectiveSeconds": self.objectives.rpo_seconds,
                "met": self.grade.rpo_met,
                "measuredFrom": "backup.recoveryPointTime",
                "measuredTo": ("backup.recoveryTarget"
                               if self.physical and self.physical.target else "startedAt"),
            },
            "checks": [_check_json(c) for c in self.checks],
            "tools": self.tools,
        }

    def report_json(self) -> bytes:
        return json.dumps(self.to_report(), indent=2, sort_keys=False).encode()


def parse_result(text: str) -> dict[str, Any] | None:
    """The drill's result from a termination message or a log tail, if there is one."""
    return runner_process.find_result_line(
        text, lambda data: data.get("verdict") in (Verdict.PASSED, Verdict.FAILED))


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True)


def _escaped_length(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=True)) - 2


def _fit(text: str, limit: int, *, keep_end: bool = False) -> str:
    """``text`` cut (marked "...") until its JSON escape fits ``limit`` bytes.

    Measured escaped, because a non-ASCII character costs six bytes on the line.
    """
    if _escaped_length(text) <= limit:
        return text

    def part(n: int) -> str:
        return text[len(text) - n:] if keep_end else text[:n]

    low, high = 0, len(text)  # binary search for the most characters that fit
    while low < high:
        middle = (low + high + 1) // 2
        if _escaped_length(part(middle)) + 3 <= limit:
            low = middle
        else:
            high = middle - 1
    return "..." + part(low) if keep_end else part(low) + "..."


def _cut(text: str, limit: int) -> str:
    return _fit(text, limit)


def _tail(text: str, limit: int) -> str:
    # The end of a tool's stderr says what went wrong: keep the end.
    return _fit(text, limit, keep_end=True)


def _round(seconds: float | None) -> float | None:
    return round(seconds, 3) if seconds is not None else None
