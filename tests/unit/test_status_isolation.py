"""The Isolated condition: while isolated, while its lift settles, and after."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stackforge_operator import status
from stackforge_operator.models.common import Condition, ConditionStatus

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_a_lift_says_isolated_until_its_moment_with_the_moment() -> None:
    isolated = status.isolation(True)
    assert (isolated.status, isolated.reason) == (ConditionStatus.TRUE, "IsolationRequested")
    settling = status.isolation(False, NOW)
    assert (settling.status, settling.reason) == (ConditionStatus.TRUE, "IsolationLifting")
    assert NOW.isoformat() in settling.message
    lifted = status.isolation(False)
    assert (lifted.status, lifted.reason) == (ConditionStatus.FALSE, "NotIsolated")


def test_a_true_condition_is_dated_from_the_moment_the_reconcile_took() -> None:
    written = NOW + timedelta(seconds=3)
    conditions = status.merge(
        [], [status.isolation(True), status.Observation("Ready", ConditionStatus.TRUE, "Ready")],
        generation=1, now=written)
    dated = status.with_transition(conditions, "Isolated", NOW)
    by_type = {c.type: c for c in dated}
    assert by_type["Isolated"].last_transition_time == NOW
    assert by_type["Ready"].last_transition_time == written
    # A False condition keeps its own time.
    lifted = [Condition(type="Isolated", status=ConditionStatus.FALSE, reason="NotIsolated",
                        last_transition_time=written)]
    assert status.with_transition(lifted, "Isolated", NOW) == lifted
