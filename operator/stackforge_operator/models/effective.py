"""A tenant's spec with every unset value filled in from its tier.

Builders read these frozen values instead of re-implementing "spec, else
tier" at each use; nothing here is ever written back to the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from stackforge_operator.models.backup import ObjectStorage
from stackforge_operator.models.common import (
    ResourceList,
    ResourceRequirements,
    SecretKeyRef,
    parse_quantity,
)
from stackforge_operator.models.tenant import (
    AdminRole,
    AppEgressRule,
    AppServiceSpec,
    NotificationsSpec,
    StackForgeTenantSpec,
    TLSSpec,
)
from stackforge_operator.models.tiers import (
    DEFAULT_TIME_ZONE,
    TARGET_CPU_UTILIZATION,
    TIERS,
    NodeSize,
    Provider,
    Quota,
    Res,
    Tier,
)


@dataclass(frozen=True)
class Resources:
    """Concrete requests and limits (quantities as strings or ints)."""

    cpu_request: int | str
    memory_request: int | str
    cpu_limit: int | str
    memory_limit: int | str


def _resources(spec: ResourceRequirements | None, default: Res) -> Resources:
    req = spec.requests if spec and spec.requests else ResourceList()
    lim = spec.limits if spec and spec.limits else ResourceList()
    cpu_request, cpu_limit = _paired(req.cpu, lim.cpu, default.cpu_request, default.cpu_limit)
    memory_request, memory_limit = _paired(req.memory, lim.memory, default.memory_request,
                                           default.memory_limit)
    return Resources(cpu_request=cpu_request, memory_request=memory_request,
                     cpu_limit=cpu_limit, memory_limit=memory_limit)


def _paired(request: int | str | None, limit: int | str | None, default_request: int | str,
            default_limit: int | str) -> tuple[int | str, int | str]:
    """A request and a limit, each the spec's or the tier's. The spec's checks see
    only what it sets: a request above the tier's limit (or a limit below the
    tier's request, or either after a tier change) made a container the API
    server refuses, and with it the workload. What the spec sets wins: its
    request raises the tier's limit to it, its limit lowers the tier's request."""
    if request is not None and limit is None and (
            parse_quantity(request) > parse_quantity(default_limit)):
        return request, request
    if limit is not None and request is None and (
            parse_quantity(default_request) > parse_quantity(limit)):
        return limit, limit
    return (request if request is not None else default_request,
            limit if limit is not None else default_limit)


T = TypeVar("T")


def _pick(value: T | None, default: T) -> T:
    return default if value is None else value


@dataclass(frozen=True)
class Pooler:
    enabled: bool
    replicas: int
    pool_mode: str
    default_pool_size: int
    max_client_connections: int
    resources: Resources


@dataclass(frozen=True)
class Postgres:
    enabled: bool
    version: int
    database: str
    storage: str
    storage_class_name: str | None
    read_replicas: int
    pooler: Pooler
    resources: Resources


@dataclass(frozen=True)
class Archiving:
    """WAL archiving of the primary, as the one BackupPolicy that asks for it says
    (reconcile/archiving_policy.py picks it; not part of the tenant's spec)."""

    policy: str
    storage: ObjectStorage
    archive_timeout_seconds: int
    cipher: SecretKeyRef


@dataclass(frozen=True)
class Restore:
    """The primary's first start on an empty volume restores an archive: another
    tenant's (spec.bootstrap, reconcile/bootstrap.py; ``storage`` and ``cipher`` then
    name this namespace's copies of the source's Secrets) or its own (an in-place
    recovery, reconcile/recovery.py). Not part of the tenant's spec."""

    source_tenant: str  # its stanza
    repository_path: str
    target: str  # RFC 3339, or "latest"
    storage: ObjectStorage
    cipher: SecretKeyRef


@dataclass(frozen=True)
class Stateful:
    """Redis, Kafka or Consul."""

    enabled: bool
    version: str
    replicas: int
    storage: str
    resources: Resources


@dataclass(frozen=True)
class Kong:
    version: str
    replicas: int
    resources: Resources


@dataclass(frozen=True)
class App:
    name: str
    image: str
    port: int
    replicas: int
    autoscaling: bool
    min_replicas: int
    max_replicas: int
    target_cpu_utilization: int
    path: str
    health_check_path: str | None
    env: dict[str, str]
    resources: Resources
    egress: tuple[AppEgressRule, ...] = ()
    # None: the image's own user (and group).
    run_as_user: int | None = None
    run_as_group: int | None = None


@dataclass(frozen=True)
class Admin:
    username: str
    email: str
    role: AdminRole
    # None: the operator generates the password.
    password_secret_ref: SecretKeyRef | None


@dataclass(frozen=True)
class Isolation:
    """An isolation in force, as the tenant's reconcile times it
    (reconcile/isolation.py)."""

    # When it began: the Isolated condition's transition.
    since: datetime
    # The primary closes every network session that began before this moment:
    # ``since`` plus the time the NetworkPolicies take to refuse new connections.
    # A session that begins later came after the isolation was lifted, and stays.
    sessions_before: datetime


@dataclass(frozen=True)
class EffectiveTenant:
    """Everything the builders need, with no value left unset."""

    name: str
    tier: Tier
    provider: Provider
    namespace: str
    suspend: bool
    isolate: bool
    domain: str | None
    tls: TLSSpec | None
    admin_accounts: tuple[Admin, ...]
    notifications: NotificationsSpec | None
    node_size: NodeSize
    node_count: int
    quota: Quota
    postgres: Postgres
    redis: Stateful
    kafka: Stateful
    kong: Kong
    consul: Stateful
    apps: tuple[App, ...]
    backup_schedule: str
    backup_time_zone: str
    drill_schedule: str
    drill_time_zone: str
    rto_seconds: int
    rpo_seconds: int
    # Set by the tenant's reconcile from its BackupPolicies, never from its spec.
    archiving: Archiving | None = None
    restore: Restore | None = None
    # Set by an in-place recovery (reconcile/recovery.py): which of the primary's
    # pods (and so volumes) is the database, whether it runs, and whether what
    # writes to it or follows it (the apps, the read replicas) is stopped.
    primary_ordinal: int = 0
    primary_stopped: bool = False
    writes_stopped: bool = False
    # Set by the tenant's reconcile while ``isolate`` is on.
    isolation: Isolation | None = None


def _app(app: AppServiceSpec, tier: Tier) -> App:
    t = TIERS[tier]
    auto = app.autoscaling
    # min/max are set together (a CEL rule): take both from the spec or both from the tier.
    if auto is not None and auto.min_replicas is not None and auto.max_replicas is not None:
        low, high = auto.min_replicas, auto.max_replicas
    else:
        low, high = t.app_min_replicas, t.app_max_replicas
    return App(
        name=app.name,
        image=app.image,
        port=app.port,
        replicas=_pick(app.replicas, t.app_replicas),
        # Explicit replicas without an autoscaling switch mean "fixed size".
        autoscaling=_pick(
            auto.enabled if auto else None,
            False if app.replicas is not None else t.app_autoscaling,
        ),
        min_replicas=low,
        max_replicas=high,
        target_cpu_utilization=_pick(
            auto.target_cpu_utilization_percentage if auto else None, TARGET_CPU_UTILIZATION
        ),
        path=app.route_path(),
        health_check_path=app.health_check_path,
        env=dict(app.env or {}),
        resources=_resources(app.resources, t.app_res),
        egress=tuple(app.egress or ()),
        run_as_user=app.security_context.run_as_user if app.security_context else None,
        run_as_group=app.security_context.run_as_group if app.security_context else None,
    )


def resolve(name: str, spec: StackForgeTenantSpec, *, namespace: str) -> EffectiveTenant:
    """Fill every unset value of ``spec`` from its tier; ``namespace`` is the tenant's own."""
    t = TIERS[spec.tier]
    c = spec.components
    pg, pool = c.postgres, c.postgres.pooler
    quota = spec.quota
    backup = spec.backup
    drill = spec.drill
    return EffectiveTenant(
        name=name,
        tier=spec.tier,
        provider=spec.provider,
        namespace=namespace,
        suspend=spec.suspend,
        isolate=spec.isolate,
        domain=spec.domain,
        tls=spec.tls,
        admin_accounts=tuple(
            Admin(a.username, a.email, a.role, a.password_secret_ref) for a in spec.admin_accounts
        ),
        notifications=spec.notifications,
        node_size=_pick(spec.nodes.size if spec.nodes else None, t.node_size),
        node_count=_pick(spec.nodes.count if spec.nodes else None, t.node_count),
        quota=Quota(
            cpu=str(_pick(quota.cpu if quota else None, t.quota.cpu)),
            memory=str(_pick(quota.memory if quota else None, t.quota.memory)),
            storage=_pick(quota.storage if quota else None, t.quota.storage),
            pods=_pick(quota.pods if quota else None, t.quota.pods),
        ),
        postgres=Postgres(
            enabled=_pick(pg.enabled, t.postgres),
            version=pg.version,
            database=pg.database,
            storage=_pick(pg.storage, t.postgres_storage),
            storage_class_name=pg.storage_class_name,
            read_replicas=_pick(pg.read_replicas, t.postgres_read_replicas),
            pooler=Pooler(
                enabled=_pick(pool.enabled, t.pooler),
                replicas=_pick(pool.replicas, t.pooler_replicas),
                pool_mode=_pick(pool.pool_mode, "transaction"),
                default_pool_size=_pick(pool.default_pool_size, t.pool_size),
                max_client_connections=_pick(pool.max_client_connections, t.max_client_connections),
                resources=_resources(pool.resources, t.pooler_res),
            ),
            resources=_resources(pg.resources, t.postgres_res),
        ),
        redis=Stateful(
            enabled=_pick(c.redis.enabled, t.redis),
            version=c.redis.version,
            replicas=1,
            storage=_pick(c.redis.storage, t.redis_storage),
            resources=_resources(c.redis.resources, t.redis_res),
        ),
        kafka=Stateful(
            enabled=_pick(c.kafka.enabled, t.kafka),
            version=c.kafka.version,
            replicas=_pick(c.kafka.replicas, t.kafka_replicas),
            storage=_pick(c.kafka.storage, t.kafka_storage),
            resources=_resources(c.kafka.resources, t.kafka_res),
        ),
        kong=Kong(
            version=c.kong.version,
            replicas=_pick(c.kong.replicas, t.kong_replicas),
            resources=_resources(c.kong.resources, t.kong_res),
        ),
        consul=Stateful(
            enabled=_pick(c.consul.enabled, t.consul),
            version=c.consul.version,
            replicas=_pick(c.consul.replicas, t.consul_replicas),
            storage=_pick(c.consul.storage, t.consul_storage),
            resources=_resources(c.consul.resources, t.consul_res),
        ),
        apps=tuple(_app(a, spec.tier) for a in c.apps),
        backup_schedule=_pick(backup.schedule if backup else None, t.backup_schedule),
        backup_time_zone=_pick(backup.time_zone if backup else None, DEFAULT_TIME_ZONE),
        drill_schedule=_pick(drill.schedule if drill else None, t.drill_schedule),
        drill_time_zone=_pick(drill.time_zone if drill else None, DEFAULT_TIME_ZONE),
        rto_seconds=_pick(drill.rto_seconds if drill else None, t.rto_seconds),
        rpo_seconds=_pick(drill.rpo_seconds if drill else None, t.rpo_seconds),
    )
