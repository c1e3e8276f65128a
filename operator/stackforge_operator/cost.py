"""Monthly cost estimate from the runbook's "Cost Management" section.

compute  = node price (provider, size) x node count
storage  = every persistent volume the stack requests, in GB, x block-storage price
backups  = 20 % of compute + storage
infra    = compute + storage + backups
price    = infra x 3 (the runbook's pricing formula: infra + labour + profit)

Suspend windows (dev environments out of hours) take their share of the week
off compute, and the backup overhead on it; the saving is stated apart.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from stackforge_operator.models.common import parse_quantity
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.models.tenant import CostStatus
from stackforge_operator.models.tiers import (
    BACKUP_OVERHEAD,
    BLOCK_STORAGE_USD_PER_GB,
    NODE_PRICE_USD,
    PRICE_MULTIPLIER,
)

_GB = Decimal(10**9)
_CENT = Decimal("0.01")


def storage_gb(t: EffectiveTenant) -> Decimal:
    """Total requested volume size in (decimal) GB, as block storage is billed."""
    volumes: list[tuple[str, int]] = []
    if t.postgres.enabled:
        volumes.append((t.postgres.storage, 1 + t.postgres.read_replicas))
    for stateful in (t.redis, t.kafka, t.consul):
        if stateful.enabled:
            volumes.append((stateful.storage, stateful.replicas))
    return sum((parse_quantity(size) * count / _GB for size, count in volumes), Decimal(0))


def _money(value: Decimal) -> str:
    return str(value.quantize(_CENT, rounding=ROUND_HALF_UP))


def _infrastructure(compute: Decimal, storage: Decimal) -> tuple[Decimal, Decimal]:
    backup = (compute + storage) * BACKUP_OVERHEAD
    return backup, compute + storage + backup


def estimate(t: EffectiveTenant, suspended_share: float | None = None) -> CostStatus:
    """``suspended_share``: the share of the week the tenant's suspend windows hold it
    suspended; its nodes are not paid then (a suspended tenant runs no pod, and the
    cluster's autoscaler gives their nodes back), its volumes are."""
    full_compute = NODE_PRICE_USD[t.provider][t.node_size] * t.node_count
    share = Decimal(str(suspended_share or 0))
    compute = full_compute * (1 - share)
    storage = storage_gb(t) * BLOCK_STORAGE_USD_PER_GB
    backup, infrastructure = _infrastructure(compute, storage)
    saving = None
    if suspended_share is not None:
        saving = _money(_infrastructure(full_compute, storage)[1] - infrastructure)
    return CostStatus(
        provider=t.provider,
        node_size=t.node_size,
        node_count=t.node_count,
        compute_monthly=_money(compute),
        storage_monthly=_money(storage),
        backup_monthly=_money(backup),
        infrastructure_monthly=_money(infrastructure),
        price_monthly=_money(infrastructure * PRICE_MULTIPLIER),
        suspended_share=None if suspended_share is None else round(suspended_share, 4),
        scheduled_saving_monthly=saving,
    )
