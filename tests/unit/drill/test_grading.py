"""The verdict: reasons, their order, and RTO/RPO against the objectives (no servers)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from stackforge_operator.drill.checks import check_result
from stackforge_operator.drill.grading import (
    Failure,
    Objectives,
    Reason,
    grade,
    whole_seconds,
)
from stackforge_operator.models.drill import CheckKind, Verdict

OK = [
    check_result("postgres.dump", CheckKind.CHECKSUM, True, expected="a", actual="a"),
    check_result("connectivity", CheckKind.CONNECTIVITY, True, expected="1", actual="1"),
    check_result("public.t", CheckKind.ROW_COUNT, True, expected="3", actual="3"),
]
BAD_TABLE = check_result("public.gone", CheckKind.ROW_COUNT, False, expected="3",
                         message="table public.gone is missing from the restored database")
OBJECTIVES = Objectives(rto_seconds=60, rpo_seconds=3600)


def test_everything_fine_passes() -> None:
    result = grade(OK, rto_seconds=12.5, rpo_seconds=600, objectives=OBJECTIVES)
    assert result.verdict == Verdict.PASSED
    assert (result.reason, result.reasons) == (None, [])
    assert (result.rto_met, result.rpo_met) == (True, True)
    assert result.message == "all 3 checks passed; RTO 13s (objective 60s); RPO 600s " \
        "(objective 3600s)"


def test_a_failing_check_fails_and_is_named() -> None:
    result = grade([*OK, BAD_TABLE], rto_seconds=12, rpo_seconds=600, objectives=OBJECTIVES)
    assert result.verdict == Verdict.FAILED
    assert result.reasons == [Reason.CHECK_FAILED]
    assert "1 of 4 checks failed" in result.message and "public.gone" in result.message


def test_objectives_are_inclusive_and_each_has_its_reason() -> None:
    exact = grade(OK, rto_seconds=60, rpo_seconds=3600, objectives=OBJECTIVES)
    assert exact.verdict == Verdict.PASSED
    late = grade(OK, rto_seconds=60.001, rpo_seconds=3600.5, objectives=OBJECTIVES)
    assert late.reasons == [Reason.RTO_MISSED, Reason.RPO_MISSED]
    assert (late.rto_met, late.rpo_met) == (False, False)
    # The message's figures are the status's: whole seconds, rounded up.
    assert "RTO 61s exceeds the objective of 60s" in late.message
    assert "RPO 3601s exceeds the objective of 3600s" in late.message


def test_an_rpo_objective_with_no_recovery_point_measured_is_missed() -> None:
    """A restored server naming no replayed transaction gave no RPO: the drill
    passed with its objectives "met", the RPO one never graded."""
    unmeasured = grade(OK, rto_seconds=12, rpo_seconds=None, objectives=OBJECTIVES)
    assert unmeasured.verdict == Verdict.FAILED and unmeasured.reasons == [Reason.RPO_MISSED]
    assert unmeasured.rpo_met is False and "RPO not measured" in unmeasured.message
    # Without an RPO objective nothing is owed; a run failed otherwise keeps its reason.
    assert grade(OK, rto_seconds=12, rpo_seconds=None,
                 objectives=Objectives(rto_seconds=60)).verdict == Verdict.PASSED
    assert grade([*OK, BAD_TABLE], rto_seconds=12, rpo_seconds=None,
                 objectives=OBJECTIVES).reasons == [Reason.CHECK_FAILED]


def test_without_objectives_nothing_is_graded_but_checks() -> None:
    result = grade(OK, rto_seconds=1e6, rpo_seconds=1e9, objectives=Objectives())
    assert result.verdict == Verdict.PASSED
    assert (result.rto_met, result.rpo_met) == (None, None)


def test_the_stopping_failure_outranks_the_rest() -> None:
    # A corrupt dump usually breaks pg_restore too: the corruption is the news.
    result = grade(
        [check_result("postgres.dump", CheckKind.CHECKSUM, False)],
        rto_seconds=None, rpo_seconds=7200, objectives=OBJECTIVES,
        failures=[Failure(Reason.RESTORE_FAILED, "pg_restore exited 1"),
                  Failure(Reason.CHECKSUM_MISMATCH, "sha256 differs")],
    )
    assert result.reasons == [Reason.CHECKSUM_MISMATCH, Reason.RESTORE_FAILED,
                              Reason.CHECK_FAILED, Reason.RPO_MISSED]
    assert result.message.startswith("sha256 differs; pg_restore exited 1")
    # RTO was never measured (no verified restore): not "missed", just absent.
    assert result.rto_met is None


def test_infrastructure_failures_come_first() -> None:
    result = grade([], rto_seconds=None, rpo_seconds=None, objectives=OBJECTIVES,
                   failures=[Failure("S3AccessDenied", "GetObject: AccessDenied")])
    assert result.reasons == ["S3AccessDenied"]
    assert result.reason == "S3AccessDenied"


def test_backup_not_found() -> None:
    result = grade([], rto_seconds=None, rpo_seconds=None, objectives=OBJECTIVES,
                   failures=[Failure(Reason.BACKUP_NOT_FOUND, "no backup")])
    assert (result.verdict, result.reason) == (Verdict.FAILED, "BackupNotFound")


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.integers(1, 10**6))
def test_whole_seconds_agree_with_the_verdict(seconds: float, objective: int) -> None:
    met = grade(OK, rto_seconds=seconds, rpo_seconds=None,
                objectives=Objectives(rto_seconds=objective)).rto_met
    assert met == ((whole_seconds(seconds) or 0) <= objective) or math.isclose(
        seconds, objective, abs_tol=1e-6
    )


def test_whole_seconds_round_up_and_never_go_negative() -> None:
    assert [whole_seconds(s) for s in (None, -3.0, 0.0, 0.2, 1.0, 59.0001)] == [
        None, 0, 0, 1, 1, 60,
    ]
