"""The result line (bounded for the termination message) and the report (no servers)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from stackforge_operator.backup.manifest import Manifest, ManifestArtifact, PostgresInfo
from stackforge_operator.drill.checks import check_result
from stackforge_operator.drill.grading import Failure, Objectives, Reason, grade
from stackforge_operator.drill.outcome import (
    TERMINATION_MESSAGE_LIMIT,
    DrillOutcome,
    RestoreFacts,
    parse_result,
)
from stackforge_operator.models.drill import CheckKind, CheckResult, DrillResult

START = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
SNAPSHOT = START - timedelta(hours=1)
MANIFEST = Manifest(
    tenant="acme", run_id="20261127T020000Z-abcdef", bucket="backups",
    prefix="stackforge/acme/20261127T020000Z-abcdef",
    started_at=SNAPSHOT - timedelta(seconds=1), finished_at=SNAPSHOT + timedelta(minutes=4),
    artifacts=[ManifestArtifact(name="postgres", key="stackforge/acme/x/postgres.dump",
                                size_bytes=1000, sha256="b" * 64)],
    postgres=PostgresInfo(server_version="15.18", server_version_num=150018, database="app",
                          row_counts={"public.t": 3}, snapshot_time=SNAPSHOT),
)


def _outcome(checks: list[CheckResult], *, failures: tuple[Failure, ...] = (),
             tail: str = "", rto: float | None = 42.2) -> DrillOutcome:
    objectives = Objectives(rto_seconds=600, rpo_seconds=86400)
    rpo = 3600.0
    return DrillOutcome(
        tenant="acme", run_id="drill-1",
        grade=grade(checks, rto_seconds=rto, rpo_seconds=rpo, objectives=objectives,
                    failures=failures),
        started_at=START, finished_at=START + timedelta(seconds=50), selection="latest",
        objectives=objectives, manifest=MANIFEST, recovery_point=SNAPSHOT,
        verified_at=START + timedelta(seconds=rto or 0), rto_seconds=rto, rpo_seconds=rpo,
        checks=checks, restore=RestoreFacts(40.0, 1000, "b" * 64, 0, tail),
    )


def _tables(n: int, failing: set[int]) -> list[CheckResult]:
    return [
        check_result(f"schema_{i:04d}.a_rather_long_table_name_{i:04d}", CheckKind.ROW_COUNT,
                     i not in failing, expected=str(i), actual=str(i + (i in failing)))
        for i in range(n)
    ]


def test_a_small_result_carries_every_check_and_the_status_fields() -> None:
    checks = _tables(3, set())
    line = _outcome(checks).to_json_line()
    data = json.loads(line)
    assert data["verdict"] == "Passed" and "reason" not in data
    assert (data["rtoSeconds"], data["rpoSeconds"]) == (43, 3600)
    assert data["recoveryPointTime"] == SNAPSHOT.isoformat()
    assert data["checkSummary"] == {"total": 3, "passed": 3, "failed": 0}
    assert len(data["checks"]) == 3 and "checksOmitted" not in data
    # The fields the DRDrill status holds parse as its model.
    result = DrillResult.model_validate(data)
    assert result.backup_id == MANIFEST.run_id and result.rto_met is True
    assert [c.name for c in result.checks] == [c.name for c in checks]


def test_many_checks_are_cut_to_the_termination_message_limit_failing_first() -> None:
    checks = _tables(500, failing={7, 250, 499})
    line = _outcome(checks).to_json_line()
    assert len(line.encode()) <= TERMINATION_MESSAGE_LIMIT < 4096
    data = json.loads(line)
    assert data["verdict"] == "Failed" and data["reason"] == "CheckFailed"
    kept = data["checks"]
    assert [c["passed"] for c in kept[:3]] == [False, False, False]
    assert [c["name"] for c in kept[:3]] == [checks[i].name for i in (7, 250, 499)]
    assert all(c["passed"] for c in kept[3:])
    assert data["checksOmitted"] == 500 - len(kept) > 0
    assert data["checkSummary"] == {"total": 500, "passed": 497, "failed": 3}
    # As many as fit: one more would not.
    data["checks"] = [c.model_dump(by_alias=True, exclude_none=True, mode="json")
                      for c in checks[: len(kept) + 1]]
    assert len(json.dumps(data, separators=(",", ":"))) > TERMINATION_MESSAGE_LIMIT - 200


def test_only_failing_checks_too_many_to_fit_are_cut_as_well() -> None:
    checks = _tables(200, failing=set(range(200)))
    data = json.loads(_outcome(checks).to_json_line())
    assert 0 < len(data["checks"]) < 200 and not any(c["passed"] for c in data["checks"])


def test_long_free_text_is_bounded_and_the_log_keeps_its_end() -> None:
    tail = "\n".join(f"pg_restore: line {i} " + "x" * 80 for i in range(200)) + "\nTHE END"
    failures = (Failure(Reason.RESTORE_FAILED, "pg_restore exited 1: " + "é" * 5000),)
    outcome = _outcome([], failures=failures, tail=tail, rto=None)
    line = outcome.to_json_line()
    assert len(line) <= TERMINATION_MESSAGE_LIMIT
    line.encode("ascii")  # escapes keep the byte count equal to the length
    data = json.loads(line)
    assert data["restoreLogTail"].endswith("THE END")
    assert data["message"].startswith("pg_restore exited 1:")
    assert "rtoSeconds" not in data and data["rpoSeconds"] == 3600
    # A tiny limit still gives valid JSON with the verdict.
    tiny = json.loads(outcome.to_json_line(limit=900))
    assert tiny["reason"] == "RestoreFailed" and "restoreLogTail" not in tiny


def test_the_report_has_everything() -> None:
    checks = _tables(500, failing={1})
    report = json.loads(_outcome(checks).report_json())
    assert report["kind"] == "StackForgeDrillReport"
    assert len(report["checks"]) == 500
    assert report["backup"]["id"] == MANIFEST.run_id
    assert report["backup"]["snapshotTime"] == SNAPSHOT.isoformat()
    assert report["backup"]["dump"] == {"key": "stackforge/acme/x/postgres.dump",
                                        "sizeBytes": 1000, "sha256": "b" * 64}
    assert report["rto"] == {"seconds": 42.2, "objectiveSeconds": 600, "met": True,
                             "measuredFrom": "startedAt", "measuredTo": "verifiedAt"}
    assert report["rpo"]["seconds"] == 3600.0
    assert report["verdict"] == "Failed" and report["reasons"] == ["CheckFailed"]


@pytest.mark.parametrize(
    "text",
    [
        '{"verdict":"Failed","reason":"RTOMissed"}\n',
        'log line\n{"verdict":"Failed","reason":"RTOMissed"}\n',
        '{"verdict":"Failed","reason":"RTOMissed"}\n2026 INFO {not json\n',
    ],
)
def test_parse_result_finds_the_line(text: str) -> None:
    assert parse_result(text) == {"verdict": "Failed", "reason": "RTOMissed"}


def test_parse_result_without_a_result() -> None:
    assert parse_result('{"result":"Succeeded"}\nTraceback ...') is None
