"""The cost estimate (pure): the runbook's formula, and the saving of suspend windows."""

from __future__ import annotations

from decimal import Decimal

from stackforge_operator.cost import estimate
from stackforge_operator.models.effective import EffectiveTenant, resolve
from stackforge_operator.models.tenant import StackForgeTenantSpec
from tests.support.tenants import example_tenant


def _example() -> EffectiveTenant:
    body = example_tenant()
    return resolve("acme", StackForgeTenantSpec.model_validate(body["spec"]),
                   namespace="tenant-acme")


def test_the_runbook_formula_without_windows() -> None:
    cost = estimate(_example())
    compute, storage = Decimal(cost.compute_monthly), Decimal(cost.storage_monthly)
    assert Decimal(cost.backup_monthly) == ((compute + storage) * Decimal("0.2")).quantize(
        Decimal("0.01"))
    assert Decimal(cost.price_monthly) == Decimal(cost.infrastructure_monthly) * 3
    assert cost.suspended_share is None and cost.scheduled_saving_monthly is None


def test_windows_take_their_share_off_compute_and_its_backup_overhead_only() -> None:
    full = estimate(_example())
    half = estimate(_example(), 0.5)
    assert half.storage_monthly == full.storage_monthly  # volumes are paid all the time
    assert Decimal(half.compute_monthly) == Decimal(full.compute_monthly) / 2
    saving = Decimal(full.infrastructure_monthly) - Decimal(half.infrastructure_monthly)
    assert Decimal(half.scheduled_saving_monthly or "0") == saving
    assert saving == (Decimal(full.compute_monthly) / 2 * Decimal("1.2")).quantize(
        Decimal("0.01"))
    assert half.suspended_share == 0.5
    none = estimate(_example(), 0.0)
    assert none.scheduled_saving_monthly == "0.00"
    assert none.price_monthly == full.price_monthly


def test_a_suspended_tenant_pays_for_its_volumes_only() -> None:
    """spec.suspend (every workload at zero, indefinitely) was priced as running:
    only suspend windows took compute off."""
    from datetime import UTC, datetime

    from stackforge_operator.reconcile.tenant import suspended_share

    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    body = example_tenant()
    running = StackForgeTenantSpec.model_validate(body["spec"])
    suspended = StackForgeTenantSpec.model_validate({**body["spec"], "suspend": True})
    windowed = StackForgeTenantSpec.model_validate({**body["spec"], "suspendWindows": [
        {"start": "0 20 * * *", "end": "0 8 * * *"}]})
    assert suspended_share(running, now) is None
    assert suspended_share(suspended, now) == 1.0
    assert suspended_share(windowed, now) == 0.5
    cost = estimate(_example(), suspended_share(suspended, now))
    assert Decimal(cost.compute_monthly) == 0
    assert cost.storage_monthly == estimate(_example()).storage_monthly
    # What is left is the volumes and their backup overhead (to the cent).
    assert abs(Decimal(cost.infrastructure_monthly)
               - Decimal(cost.storage_monthly) * Decimal("1.2")) <= Decimal("0.01")
