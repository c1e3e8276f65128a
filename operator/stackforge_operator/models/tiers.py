"""Service tiers: the defaults a tenant gets unless its spec says otherwise.

Figures come from the runbook: node sizes and prices from "Cost Management",
02:00 daily backups from "Automated Backups", the monthly restore test from
"Monthly Tasks", PgBouncer and read replicas from "Database Scaling", the
80 % CPU autoscaling threshold from "Monitoring & Alerting".  Tier defaults
are applied by the operator (see :mod:`stackforge_operator.models.effective`),
never written into the object, so changing a tier changes every unset value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal


class Tier(enum.StrEnum):
    """A StackForge service tier."""

    STARTER = "Starter"
    GROWTH = "Growth"
    ENTERPRISE = "Enterprise"


class Provider(enum.StrEnum):
    """Cloud provider whose prices the cost estimate uses."""

    DIGITALOCEAN = "digitalocean"
    AWS = "aws"
    LINODE = "linode"


class NodeSize(enum.StrEnum):
    """Node sizes of the runbook's cost table (vCPUs and memory)."""

    CPU2_4GB = "2cpu-4gb"
    CPU4_8GB = "4cpu-8gb"
    CPU8_16GB = "8cpu-16gb"


# Monthly USD prices per node, from the runbook's "Infrastructure Costs" table.
NODE_PRICE_USD: dict[Provider, dict[NodeSize, Decimal]] = {
    Provider.DIGITALOCEAN: {
        NodeSize.CPU2_4GB: Decimal(24),
        NodeSize.CPU4_8GB: Decimal(48),
        NodeSize.CPU8_16GB: Decimal(96),
    },
    Provider.AWS: {
        NodeSize.CPU2_4GB: Decimal(35),
        NodeSize.CPU4_8GB: Decimal(70),
        NodeSize.CPU8_16GB: Decimal(140),
    },
    Provider.LINODE: {
        NodeSize.CPU2_4GB: Decimal(24),
        NodeSize.CPU4_8GB: Decimal(48),
        NodeSize.CPU8_16GB: Decimal(96),
    },
}
BLOCK_STORAGE_USD_PER_GB = Decimal("0.10")
BACKUP_OVERHEAD = Decimal("0.20")  # backups cost 20 % of the infrastructure
PRICE_MULTIPLIER = 3  # customer price = infrastructure x 3 (infra + labour + profit)


@dataclass(frozen=True)
class Res:
    """Default requests and limits of one workload."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str


@dataclass(frozen=True)
class Quota:
    """Namespace ResourceQuota totals."""

    cpu: str
    memory: str
    storage: str
    pods: int


@dataclass(frozen=True)
class TierProfile:
    """Everything a tier decides by default."""

    tier: Tier
    node_size: NodeSize
    node_count: int
    quota: Quota
    # Components on by default (Kong is always on: it is the tenant's only ingress).
    postgres: bool
    redis: bool
    kafka: bool
    consul: bool
    postgres_storage: str
    postgres_read_replicas: int
    postgres_res: Res
    pooler: bool
    pooler_replicas: int
    pool_size: int
    max_client_connections: int
    pooler_res: Res
    redis_storage: str
    redis_res: Res
    kafka_replicas: int
    kafka_storage: str
    kafka_res: Res
    kong_replicas: int
    kong_res: Res
    consul_replicas: int
    consul_storage: str
    consul_res: Res
    app_replicas: int
    app_autoscaling: bool
    app_min_replicas: int
    app_max_replicas: int
    app_res: Res
    backup_schedule: str
    drill_schedule: str
    rto_seconds: int
    rpo_seconds: int


# Autoscaling target from the runbook's "CPU usage > 80 % for 5 min" alert.
TARGET_CPU_UTILIZATION = 80
DEFAULT_TIME_ZONE = "Etc/UTC"

TIERS: dict[Tier, TierProfile] = {
    Tier.STARTER: TierProfile(
        tier=Tier.STARTER,
        # Runbook pricing example: a $48 droplet -> $149/month Starter.
        node_size=NodeSize.CPU4_8GB,
        node_count=1,
        quota=Quota(cpu="4", memory="8Gi", storage="100Gi", pods=40),
        postgres=True,
        redis=True,
        kafka=False,
        consul=False,
        postgres_storage="20Gi",
        postgres_read_replicas=0,
        postgres_res=Res("250m", "512Mi", "1", "1Gi"),
        pooler=False,
        pooler_replicas=1,
        pool_size=20,
        max_client_connections=100,
        pooler_res=Res("50m", "64Mi", "250m", "128Mi"),
        redis_storage="1Gi",
        redis_res=Res("100m", "128Mi", "500m", "256Mi"),
        kafka_replicas=1,
        kafka_storage="10Gi",
        kafka_res=Res("250m", "1Gi", "1", "2Gi"),
        kong_replicas=1,
        kong_res=Res("100m", "256Mi", "500m", "512Mi"),
        consul_replicas=1,
        consul_storage="1Gi",
        consul_res=Res("100m", "128Mi", "250m", "256Mi"),
        app_replicas=1,
        app_autoscaling=False,
        app_min_replicas=1,
        app_max_replicas=2,
        app_res=Res("100m", "128Mi", "500m", "512Mi"),
        backup_schedule="0 2 * * *",
        drill_schedule="0 3 1 */3 *",  # quarterly
        rto_seconds=4 * 3600,
        rpo_seconds=26 * 3600,  # daily backups + 2 h grace
    ),
    Tier.GROWTH: TierProfile(
        tier=Tier.GROWTH,
        node_size=NodeSize.CPU8_16GB,
        node_count=1,
        quota=Quota(cpu="8", memory="16Gi", storage="250Gi", pods=100),
        postgres=True,
        redis=True,
        kafka=True,
        consul=True,
        postgres_storage="50Gi",
        postgres_read_replicas=1,
        postgres_res=Res("500m", "1Gi", "2", "2Gi"),
        pooler=True,
        pooler_replicas=1,
        pool_size=50,
        max_client_connections=500,
        pooler_res=Res("100m", "64Mi", "500m", "128Mi"),
        redis_storage="2Gi",
        redis_res=Res("100m", "256Mi", "1", "512Mi"),
        kafka_replicas=1,
        kafka_storage="20Gi",
        kafka_res=Res("500m", "2Gi", "2", "3Gi"),
        kong_replicas=2,
        kong_res=Res("250m", "256Mi", "1", "512Mi"),
        consul_replicas=1,
        consul_storage="1Gi",
        consul_res=Res("100m", "128Mi", "250m", "256Mi"),
        app_replicas=2,
        app_autoscaling=True,
        app_min_replicas=2,
        app_max_replicas=6,
        app_res=Res("250m", "256Mi", "1", "1Gi"),
        backup_schedule="0 2 * * *",
        drill_schedule="0 3 1 * *",  # monthly, as the runbook asks
        rto_seconds=3600,
        rpo_seconds=26 * 3600,
    ),
    Tier.ENTERPRISE: TierProfile(
        tier=Tier.ENTERPRISE,
        node_size=NodeSize.CPU8_16GB,
        node_count=3,
        quota=Quota(cpu="24", memory="48Gi", storage="1Ti", pods=300),
        postgres=True,
        redis=True,
        kafka=True,
        consul=True,
        postgres_storage="200Gi",
        postgres_read_replicas=2,
        postgres_res=Res("1", "4Gi", "4", "8Gi"),
        pooler=True,
        pooler_replicas=2,
        pool_size=100,
        max_client_connections=2000,
        pooler_res=Res("250m", "128Mi", "1", "256Mi"),
        redis_storage="8Gi",
        redis_res=Res("250m", "1Gi", "1", "2Gi"),
        kafka_replicas=3,
        kafka_storage="50Gi",
        kafka_res=Res("1", "4Gi", "2", "6Gi"),
        kong_replicas=3,
        kong_res=Res("500m", "512Mi", "2", "1Gi"),
        consul_replicas=3,
        consul_storage="2Gi",
        consul_res=Res("250m", "256Mi", "500m", "512Mi"),
        app_replicas=3,
        app_autoscaling=True,
        app_min_replicas=3,
        app_max_replicas=12,
        app_res=Res("500m", "512Mi", "2", "2Gi"),
        backup_schedule="0 2,14 * * *",  # twice daily
        drill_schedule="0 3 * * 0",  # weekly
        rto_seconds=1800,
        rpo_seconds=14 * 3600,  # 12-hourly backups + 2 h grace
    ),
}
