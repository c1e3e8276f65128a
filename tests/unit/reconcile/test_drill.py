"""When a DRDrill's next scheduled run is due (reconcile/drill.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stackforge_operator.models.drill import DRDrillSpec, DRDrillStatus, DrillResult, Verdict
from stackforge_operator.reconcile import drill
from tests.unit.builders.tenants import tenant


def test_a_schedule_in_the_hour_the_clocks_repeat_runs_once() -> None:
    """New York goes back from 02:00 EDT to 01:00 EST on 2026-11-01: 01:30 comes
    twice (05:30 and 06:30 UTC). A second full restore ran an hour after the first."""
    spec = DRDrillSpec.model_validate({"tenantRef": {"name": "acme"},
                                       "schedule": "30 1 * * 0",
                                       "timeZone": "America/New_York"})
    started = datetime(2026, 11, 1, 5, 30, 2, tzinfo=UTC)
    old = DRDrillStatus(last_result=DrillResult(run_id="r1", verdict=Verdict.PASSED,
                                                start_time=started))
    assert not drill._due(spec, tenant(), old, started + timedelta(hours=1, minutes=1))
    a_week_on = datetime(2026, 11, 8, 6, 30, 5, tzinfo=UTC)  # 01:30 EST
    assert drill._due(spec, tenant(), old, a_week_on)
    assert not drill._due(spec, tenant(), old, a_week_on - timedelta(minutes=1))
