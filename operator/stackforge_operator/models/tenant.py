"""StackForgeTenant: one customer's isolated stack.

Namespaced, one tenant per namespace: the tenant lives in the namespace its
stack runs in, which someone (a human, Argo CD's ``CreateNamespace``) made
beforehand.  Being namespaced is what lets a HorizontalPodAutoscaler target
the tenant's scale subresource: an HPA only resolves targets in its own
namespace.  Every field left unset takes the tier's value
(:mod:`stackforge_operator.models.tiers`).
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictInt

from stackforge_operator.models.backup import RunResult
from stackforge_operator.models.cel import Cel, Rule, ServerDefault
from stackforge_operator.models.common import (
    DNS_LABEL_RE,
    DNS_SUBDOMAIN_RE,
    EMAIL_RE,
    IMAGE_RE,
    SECRET_KEY_RE,
    Conditions,
    Cron,
    DNSLabel,
    Domain,
    Quantity,
    ResourceRequirements,
    RunId,
    SecretKeyRef,
    SpecModel,
    StatusModel,
    StorageSize,
    TimeZone,
    condition_list_field,
    list_map,
    parse_quantity,
    unique,
)
from stackforge_operator.models.drill import Verdict
from stackforge_operator.models.tiers import NodeSize, Provider, Tier

# Namespaces a tenant must never run in: it would relabel them (Pod Security
# "restricted") and fill them with its stack. kube-* are refused as well.
RESERVED_NAMESPACES = ("default", "stackforge-system")
RESERVED_NAMESPACE_PREFIX = "kube-"
# For messages: "default, stackforge-system or kube-*".
RESERVED_NAMESPACES_TEXT = (
    ", ".join(RESERVED_NAMESPACES) + f" or {RESERVED_NAMESPACE_PREFIX}*")
# The name is a label value and part of child names ("<name>-tls"); kept to
# the length it always had so every derived name still fits.
MAX_TENANT_NAME = 56
# The major the project's images serve (images/postgres, and the runners' client
# tools in images/operator: pg_dump dumps servers up to its own major). It was 16:
# a tenant created without a version asked for an image the project cannot build,
# and its backups, had one been found, failed "server version mismatch".
POSTGRES_DEFAULT_VERSION = 15


def _storage_may_not_shrink(component: str) -> Rule:
    return Rule(
        cel=(
            "!has(oldSelf.storage) || !has(self.storage) || "
            "quantity(self.storage).compareTo(quantity(oldSelf.storage)) >= 0"
        ),
        message=f"{component}.storage cannot shrink: volumes can only grow",
        field_path=".storage",
        check_update=lambda old, new: (
            old.storage is None
            or new.storage is None
            or parse_quantity(new.storage) >= parse_quantity(old.storage)
        ),
    )


def _fixed(field: str, message: str) -> Rule:
    """A field that may not change once set (``field``: its name in the schema and
    in the model, one word)."""
    return Rule(
        cel=f"!has(oldSelf.{field}) || !has(self.{field}) || self.{field} == oldSelf.{field}",
        message=message,
        field_path=f".{field}",
        check_update=lambda old, new: getattr(new, field) == getattr(old, field),
    )


Version = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9]+(\.[0-9]+){0,2}$")]

# --------------------------------------------------------------------------- components


# How many claims of earlier in-place recoveries a tenant's status lists; a
# recovery that would leave one more is refused (reconcile/recovery.py).
KEPT_VOLUMES_MAX = 16

class PoolerSpec(SpecModel):
    """PgBouncer connection pooler in front of PostgreSQL (runbook: Database Scaling)."""

    cel_rules = (
        Rule(
            cel=(
                "!has(self.defaultPoolSize) || !has(self.maxClientConnections) || "
                "self.defaultPoolSize <= self.maxClientConnections"
            ),
            message="pooler.defaultPoolSize must not exceed pooler.maxClientConnections",
            field_path=".defaultPoolSize",
            check=lambda p: (
                p.default_pool_size is None
                or p.max_client_connections is None
                or p.default_pool_size <= p.max_client_connections
            ),
        ),
    )

    enabled: StrictBool | None = Field(None, description="Run the pooler. Default: the tier's.")
    replicas: StrictInt | None = Field(None, ge=1, le=10, description="Pooler replicas.")
    pool_mode: Literal["session", "transaction", "statement"] | None = Field(
        None, description="PgBouncer pool_mode. Default: transaction."
    )
    default_pool_size: StrictInt | None = Field(
        None, ge=1, le=10000, description="Server connections per database/user pair."
    )
    max_client_connections: StrictInt | None = Field(
        None, ge=1, le=100000, description="Client connections the pooler accepts."
    )
    resources: ResourceRequirements | None = Field(None, description="Pooler pod resources.")


class PostgresSpec(SpecModel):
    """The tenant's PostgreSQL application database."""

    cel_rules = (
        # A data directory belongs to one major version: a newer server refuses it
        # ("database files are incompatible with server") and crash-loops, an older
        # one too. No in-place pg_upgrade here: the way is a new tenant.
        _fixed(
            "version",
            "postgres.version cannot change on an existing tenant: its data files are of "
            "one major version; to move to another, create a new tenant with that "
            "version and restore a backup of this one into it",
        ),
        # The database is made under its name at the primary's first start only;
        # apps, the pooler and backups follow the name: a new one pointed them all
        # at a database that does not exist.
        _fixed(
            "database",
            "postgres.database cannot change on an existing tenant: the database was "
            "made under its name at the first start, and apps, the pooler and backups "
            "would look for one that does not exist",
        ),
        _storage_may_not_shrink("postgres"),
    )

    enabled: StrictBool | None = Field(
        None, description="Run PostgreSQL. Default: the tier's (on)."
    )
    # Pinned server-side at creation, so that an operator release with a newer
    # default never upgrades an existing database's major version by itself.
    version: Annotated[StrictInt, ServerDefault(POSTGRES_DEFAULT_VERSION)] = Field(
        POSTGRES_DEFAULT_VERSION,
        ge=13,
        le=18,
        description=(
            "PostgreSQL major version, fixed at creation (a new major is a new tenant "
            "restored from a backup); minor updates come with the image."
        ),
    )
    # Pinned server-side: leaving the field out of an update cannot rename it.
    database: Annotated[str, Field(max_length=63, pattern=r"^[a-z_][a-z0-9_]*$"),
                        ServerDefault("app")] = Field(
        "app", description="Name of the application database, fixed at creation."
    )
    storage: StorageSize | None = Field(
        None, description="Volume size per instance, e.g. 50Gi; can grow, never shrink."
    )
    storage_class_name: DNSLabel | None = Field(
        None, description="StorageClass of the volumes. Default: the cluster default."
    )
    read_replicas: StrictInt | None = Field(
        None,
        ge=0,
        le=5,
        description="Streaming-replication read replicas behind a read-only Service.",
    )
    pooler: Annotated[PoolerSpec, ServerDefault({})] = Field(
        default_factory=PoolerSpec, description="Connection pooler settings."
    )
    resources: ResourceRequirements | None = Field(None, description="Database pod resources.")


class RedisSpec(SpecModel):
    """Redis cache."""

    cel_rules = (_storage_may_not_shrink("redis"),)

    enabled: StrictBool | None = Field(None, description="Run Redis. Default: the tier's.")
    version: Version = Field("7.2", description="Redis version, e.g. 7.2.")
    storage: StorageSize | None = Field(None, description="Persistence volume size.")
    resources: ResourceRequirements | None = Field(None, description="Redis pod resources.")


class KafkaSpec(SpecModel):
    """Kafka message broker (KRaft mode)."""

    cel_rules = (
        # Every node is a KRaft controller and the voter set is static: each
        # node's log directory records it. A new count would start nodes that
        # disagree with the existing ones about who votes (no quorum, or two).
        # So the count is fixed once given; the operator refuses a change that
        # arrives without this field (a tier's default) the same way.
        Rule(
            cel=("!has(oldSelf.replicas) || !has(self.replicas) "
                 "|| self.replicas == oldSelf.replicas"),
            message=(
                "kafka.replicas cannot change on an existing tenant: every Kafka node is a "
                "KRaft controller and the voter set is fixed when the cluster is formed; "
                "for another broker count, create a new tenant and move the topics"
            ),
            field_path=".replicas",
            check_update=lambda old, new: (
                old.replicas is None or new.replicas is None or new.replicas == old.replicas
            ),
        ),
        _storage_may_not_shrink("kafka"),
    )

    enabled: StrictBool | None = Field(None, description="Run Kafka. Default: the tier's.")
    version: Version = Field("3.7.0", description="Kafka version, e.g. 3.7.0.")
    replicas: StrictInt | None = Field(
        None, ge=1, le=9,
        description="Number of nodes (each broker and controller); fixed once the cluster runs.",
    )
    storage: StorageSize | None = Field(None, description="Log volume size per broker.")
    resources: ResourceRequirements | None = Field(None, description="Broker pod resources.")


class KongSpec(SpecModel):
    """Kong API gateway: always on, the tenant's only way in.

    ``replicas`` is the target of the tenant's scale subresource
    (``kubectl scale sft/NAME --replicas=N``).
    """

    version: Version = Field("3.6", description="Kong version, e.g. 3.6.")
    replicas: StrictInt | None = Field(
        None,
        ge=0,
        le=50,
        description="Gateway replicas; what `kubectl scale` and an HPA on the tenant change.",
    )
    resources: ResourceRequirements | None = Field(None, description="Gateway pod resources.")


class ConsulSpec(SpecModel):
    """Consul service discovery; every app instance is registered."""

    cel_rules = (
        # The servers' Raft configuration lists every server: dropping to fewer
        # than a majority of it (3 to 1, 5 to 1) leaves the rest without a
        # leader for good. 5 to 3 keeps one, and the dropped servers are
        # cleaned up.
        Rule(
            cel=("!has(oldSelf.replicas) || !has(self.replicas) "
                 "|| self.replicas * 2 > oldSelf.replicas"),
            message=(
                "consul.replicas cannot drop below a majority of the running servers: "
                "those left would never elect a leader; remove servers at most down to a "
                "majority (5 to 3), or create a new tenant"
            ),
            field_path=".replicas",
            check_update=lambda old, new: (
                old.replicas is None or new.replicas is None
                or new.replicas * 2 > old.replicas
            ),
        ),
        _storage_may_not_shrink("consul"),
    )

    enabled: StrictBool | None = Field(None, description="Run Consul. Default: the tier's.")
    version: Version = Field("1.18", description="Consul version, e.g. 1.18.")
    replicas: Literal[1, 3, 5] | None = Field(
        None, description="Consul servers: 1, 3 or 5 (an odd quorum)."
    )
    storage: StorageSize | None = Field(None, description="Data volume size per server.")
    resources: ResourceRequirements | None = Field(None, description="Consul pod resources.")


class AutoscalingSpec(SpecModel):
    """HorizontalPodAutoscaler bounds of an app service."""

    cel_rules = (
        Rule(
            cel="has(self.minReplicas) == has(self.maxReplicas)",
            message="autoscaling.minReplicas and autoscaling.maxReplicas must be set together",
            field_path=".maxReplicas",
            check=lambda a: (a.min_replicas is None) == (a.max_replicas is None),
        ),
        Rule(
            cel=(
                "!has(self.minReplicas) || !has(self.maxReplicas) || "
                "self.minReplicas <= self.maxReplicas"
            ),
            message="autoscaling.minReplicas must be less than or equal to maxReplicas",
            field_path=".minReplicas",
            check=lambda a: (
                a.min_replicas is None or a.max_replicas is None or a.min_replicas <= a.max_replicas
            ),
        ),
    )

    enabled: StrictBool | None = Field(
        None,
        description=("Create an HPA. Default: off when the app sets replicas, else the tier's."),
    )
    min_replicas: StrictInt | None = Field(None, ge=1, le=100, description="Lower bound.")
    max_replicas: StrictInt | None = Field(None, ge=1, le=100, description="Upper bound.")
    target_cpu_utilization_percentage: StrictInt | None = Field(
        None,
        ge=1,
        le=100,
        alias="targetCPUUtilizationPercentage",
        description="Average CPU utilisation to aim for. Default: 80 (runbook alert threshold).",
    )


def _canonical_cidr(value: str) -> str:
    """A CIDR as NetworkPolicy validation wants it: no host bits set, canonical form."""
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        raise ValueError(f"not a CIDR with its host bits zero, e.g. 203.0.113.0/24: {error}"
                         ) from None
    if str(network) != value or "/" not in value:
        raise ValueError(f"write the CIDR as {network}")
    return value


CIDR = Annotated[
    str,
    Field(min_length=3, max_length=43, json_schema_extra={"format": "cidr"}),
    AfterValidator(_canonical_cidr),
]


class EgressPort(SpecModel):
    """A destination port."""

    port: StrictInt = Field(ge=1, le=65535, description="Destination port.")
    protocol: Literal["TCP", "UDP"] = Field("TCP", description="TCP or UDP.")


class AppEgressRule(SpecModel):
    """Outside addresses an app may open connections to."""

    cidr: CIDR = Field(description="Destination addresses, e.g. 203.0.113.0/24 or ::/0.")
    except_: Annotated[list[CIDR], Field(max_length=32)] | None = Field(
        None, alias="except", description="Addresses inside cidr that stay refused."
    )
    ports: Annotated[list[EgressPort], Field(min_length=1, max_length=16)] = Field(
        description="Destination ports (at least one: an egress rule never opens every port)."
    )


class AppSecurityContext(SpecModel):
    """Who the app's processes run as; within Pod Security "restricted" (never root)."""

    run_as_user: StrictInt = Field(
        ge=1, le=2147483647, description="User id (not 0: the namespace refuses root)."
    )
    run_as_group: StrictInt | None = Field(
        None, ge=0, le=2147483647, description="Group id. Default: the image's."
    )


# The names a container's environment takes (the API server's own rule): printable
# ASCII but '='. A Deployment with any other name is refused.
ENV_NAME_RE = "^[ -<>-~]+$"
_ENV_NAME = re.compile(ENV_NAME_RE)
ENV_NAMES_RULE = Rule(
    cel=f"self.all(name, name.matches('{ENV_NAME_RE}'))",
    message="env: each variable's name must be printable ASCII characters other than '='",
    check=lambda env: all(_ENV_NAME.fullmatch(name) for name in env),
)


# Object names the stack's own components use (builders/); an app service must
# not take one: its Deployment, Service, HPA and PodDisruptionBudget are named
# after it, and two desired objects of one name would each overwrite the other
# (the postgres Service selecting the app's pods) at every reconcile.
RESERVED_APP_NAMES = (
    "consul", "consul-headless", "consul-metrics", "consul-services",
    "kafka", "kafka-headless", "kafka-metrics",
    "kong", "kong-config", "kong-metrics", "kong-proxy",
    "pooler", "pooler-config",
    "postgres", "postgres-headless", "postgres-init", "postgres-metrics", "postgres-read",
    "postgres-replica",
    "redis", "redis-metrics",
    "tenant",
)  # fmt: skip


APP_NAME_RE = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class AppServiceSpec(SpecModel):
    """One application service: a Deployment and Service behind Kong, registered in Consul."""

    cel_rules = (
        Rule(
            cel=f"!(self.name in {json.dumps(list(RESERVED_APP_NAMES))})",
            message=("name: the stack's own objects use this name (apps may not be named "
                     + ", ".join(RESERVED_APP_NAMES) + ")"),
            field_path=".name",
            check=lambda app: app.name not in RESERVED_APP_NAMES,
        ),
    )

    # A Service's name is a DNS-1035 label: it starts with a letter. A name
    # starting with a digit got the app's Service refused, and with it the app.
    name: Annotated[str, Field(min_length=1, max_length=40, pattern=APP_NAME_RE)] = Field(
        description=("Service name, unique within the tenant: a DNS label of up to 40 "
                     "characters that starts with a letter.")
    )
    image: Annotated[str, Field(min_length=1, max_length=512, pattern=IMAGE_RE)] = Field(
        description="Container image, e.g. registry.example.com/acme/api:1.4.2."
    )
    port: StrictInt = Field(ge=1, le=65535, description="Container port the service listens on.")
    replicas: StrictInt | None = Field(
        None, ge=0, le=100, description="Replicas when not autoscaled. Default: the tier's."
    )
    autoscaling: AutoscalingSpec | None = Field(None, description="Autoscaling bounds.")
    path: (
        Annotated[str, Field(min_length=1, max_length=256, pattern=r"^/[A-Za-z0-9/_.~-]*$")] | None
    ) = Field(None, description="Route path prefix in Kong. Default: /<name>.")
    health_check_path: (
        Annotated[str, Field(min_length=1, max_length=256, pattern=r"^/[A-Za-z0-9/_.~-]*$")] | None
    ) = Field(None, description="HTTP path of the readiness probe. Default: TCP probe.")
    env: (
        Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=64),
                  Cel(ENV_NAMES_RULE)] | None
    ) = Field(None, description="Plain environment variables (put secrets in Secrets).")
    resources: ResourceRequirements | None = Field(None, description="Pod resources.")
    egress: Annotated[list[AppEgressRule], Field(max_length=32)] | None = Field(
        None,
        description=(
            "Addresses outside the stack the app may connect to (payment APIs, SMTP, ...). "
            "Default: none; the app reaches only the tenant's stack and DNS."
        ),
    )
    security_context: AppSecurityContext | None = Field(
        None, description="The user and group the app runs as. Default: the image's own."
    )

    def route_path(self) -> str:
        """The Kong route prefix in effect."""
        return self.path if self.path is not None else f"/{self.name}"


_APP_PATH = "(has({v}.path) ? {v}.path : '/' + {v}.name)"


class ComponentsSpec(SpecModel):
    """The parts of the stack the tenant runs."""

    cel_rules = (
        Rule(
            cel=(
                "!has(self.apps) || self.apps.all(a, self.apps.exists_one(b, "
                f"{_APP_PATH.format(v='a')} == {_APP_PATH.format(v='b')}))"
            ),
            message=(
                "apps: every app service needs its own Kong route path (path defaults to /<name>)"
            ),
            field_path=".apps",
            check=lambda c: len({a.route_path() for a in c.apps}) == len(c.apps),
        ),
    )

    postgres: Annotated[PostgresSpec, ServerDefault({})] = Field(
        default_factory=PostgresSpec, description="PostgreSQL application database."
    )
    redis: RedisSpec = Field(default_factory=RedisSpec, description="Redis cache.")
    kafka: KafkaSpec = Field(default_factory=KafkaSpec, description="Kafka broker.")
    kong: KongSpec = Field(default_factory=KongSpec, description="Kong gateway (always on).")
    consul: ConsulSpec = Field(default_factory=ConsulSpec, description="Consul service discovery.")
    apps: Annotated[list[AppServiceSpec], Field(max_length=20), AfterValidator(unique("name"))] = (
        Field(
            default_factory=list,
            description="Application services, unique by name.",
            json_schema_extra=list_map("name"),
        )
    )


# --------------------------------------------------------------------------- the rest


class IssuerRef(SpecModel):
    """A cert-manager issuer."""

    name: DNSLabel = Field(description="Name of the Issuer or ClusterIssuer.")
    kind: Literal["Issuer", "ClusterIssuer"] = Field(
        "ClusterIssuer", description="Issuer (in the tenant namespace) or ClusterIssuer."
    )


class TLSSpec(SpecModel):
    """Where the certificate for the domain comes from: an issuer or an existing Secret."""

    cel_rules = (
        Rule(
            cel="has(self.issuerRef) != has(self.secretName)",
            message="tls must set exactly one of issuerRef or secretName",
            check=lambda t: (t.issuer_ref is None) != (t.secret_name is None),
        ),
    )

    issuer_ref: IssuerRef | None = Field(
        None, description="Issue the certificate with cert-manager using this issuer."
    )
    secret_name: DNSLabel | None = Field(
        None, description="Use this kubernetes.io/tls Secret from the tenant namespace."
    )


class AdminRole(enum.StrEnum):
    """What an admin account may do in the tenant's database (docs/api.md has the mapping)."""

    ADMIN = "Admin"
    OPERATOR = "Operator"
    VIEWER = "Viewer"


# Role names the stack itself uses: an admin account may not take them over.
RESERVED_ADMIN_NAMES = ("postgres", "replicator", "app")
# Dot-separated labels of letters, digits, '-' and '_', starting with a letter:
# a PostgreSQL role name that, '_' read as '-', also names a Secret.
ADMIN_USERNAME_RE = r"^[a-z]([a-z0-9_-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9_-]*[a-z0-9])?)*$"


def admin_secret_name(username: str) -> str:
    """The Secret holding an admin account's generated password (``admin-<username>``,
    with '_' written '-', which Secret names cannot hold)."""
    return "admin-" + username.replace("_", "-")


class AdminAccount(SpecModel):
    """A customer administrator (runbook onboarding: set up customer admin accounts):
    a PostgreSQL login role with the privileges its role names."""

    cel_rules = (
        Rule(
            cel=(
                "!(self.username in " + str(list(RESERVED_ADMIN_NAMES)) + ") && "
                "!self.username.startsWith('pg_') && !self.username.startsWith('stackforge')"
            ),
            message=(
                "adminAccounts.username may not be postgres, replicator or app, nor start "
                "with pg_ or stackforge: those roles belong to the stack"
            ),
            field_path=".username",
            check=lambda a: a.username not in RESERVED_ADMIN_NAMES
            and not a.username.startswith(("pg_", "stackforge")),
        ),
    )

    username: Annotated[str, Field(min_length=1, max_length=32, pattern=ADMIN_USERNAME_RE)] = (
        Field(description="Login name (a PostgreSQL role), unique within the tenant.")
    )
    email: Annotated[str, Field(min_length=3, max_length=254, pattern=EMAIL_RE)] = Field(
        description="Contact address for the account."
    )
    role: AdminRole = Field(
        AdminRole.ADMIN,
        description=(
            "Admin (the database owner's rights), Operator (read and write all data, "
            "monitoring) or Viewer (read all data)."
        ),
    )
    password_secret_ref: SecretKeyRef | None = Field(
        None,
        description=(
            "Initial password. Default: generated into the Secret admin-<username> "
            "('_' written '-') in the namespace."
        ),
    )


def _admin_secret_names_distinct(accounts: list[AdminAccount]) -> list[AdminAccount]:
    seen: dict[str, str] = {}
    for account in accounts:
        secret = admin_secret_name(account.username)
        if secret in seen:
            raise ValueError(
                f"adminAccounts: {seen[secret]!r} and {account.username!r} would share the "
                f"Secret {secret} ('_' is written '-' in Secret names)")
        seen[secret] = account.username
    return accounts


class BackupCadence(SpecModel):
    """The tenant's backup cadence: the default for its BackupPolicies and its freshness bar."""

    schedule: Cron | None = Field(None, description="Cron schedule. Default: the tier's (02:00).")
    time_zone: TimeZone | None = Field(
        None, description="IANA time zone of the schedule, e.g. Europe/Berlin. Default: Etc/UTC."
    )


class DrillCadence(SpecModel):
    """The tenant's disaster-recovery drill cadence and objectives (defaults for its DRDrills)."""

    schedule: Cron | None = Field(
        None, description="Cron schedule of drills. Default: the tier's (monthly for Growth)."
    )
    time_zone: TimeZone | None = Field(None, description="IANA time zone of the schedule.")
    rto_seconds: StrictInt | None = Field(
        None, gt=0, le=604800, description="Recovery time objective in seconds."
    )
    rpo_seconds: StrictInt | None = Field(
        None, gt=0, le=7776000, description="Recovery point objective in seconds."
    )


class NotificationEvent(enum.StrEnum):
    """Events that can be notified."""

    BACKUP_FAILED = "BackupFailed"
    BACKUP_STALE = "BackupStale"
    # The policy's ContinuousArchiving is False: WAL is not reaching the archive.
    ARCHIVING_FAILED = "ArchivingFailed"
    DRILL_FAILED = "DrillFailed"
    COMPONENT_DEGRADED = "ComponentDegraded"
    CERTIFICATE_EXPIRING = "CertificateExpiring"
    TENANT_ISOLATED = "TenantIsolated"
    # Not Ready for longer than the runbook's 15 minutes ("notify customers").
    TENANT_NOT_READY = "TenantNotReady"
    # An in-place recovery runs (the apps are stopped) until it succeeds or fails.
    TENANT_RECOVERING = "TenantRecovering"
    # The last in-place recovery failed: the tenant is back on its old database.
    RECOVERY_FAILED = "RecoveryFailed"
    # A component's server stopped because its volume is full: at once, since
    # only growing the volume (or removing data) ends it.
    VOLUME_FULL = "VolumeFull"


# The runbook's "SMS: for critical issues only": what must wake a person. The
# tenant down for its customers, a database stopped by a full volume or left on
# its old data by a failed recovery, WAL no longer archived (every minute of it
# is a minute point-in-time recovery cannot give back), and an isolated tenant
# (a security incident). The others wait for working hours: Slack and email.
CRITICAL_EVENTS: frozenset[NotificationEvent] = frozenset({
    NotificationEvent.TENANT_NOT_READY,
    NotificationEvent.VOLUME_FULL,
    NotificationEvent.RECOVERY_FAILED,
    NotificationEvent.ARCHIVING_FAILED,
    NotificationEvent.TENANT_ISOLATED,
})

EmailAddress = Annotated[str, Field(min_length=3, max_length=254, pattern=EMAIL_RE)]
# E.164: a plus, the country code, at most 15 digits.
PhoneNumber = Annotated[str, Field(min_length=8, max_length=16, pattern=r"^\+[1-9][0-9]{6,14}$")]
_SecretName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_RE)]
_SecretKey = Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_RE)]
# A name of a request's field: what providers' APIs use.
_FieldName = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")]


class SmtpSecurity(enum.StrEnum):
    """How the connection to the SMTP server is encrypted; never in clear text,
    since the credentials and the incidents travel on it."""

    # A plain connection upgraded with STARTTLS before anything else (port 587).
    START_TLS = "StartTLS"
    # TLS from the first byte ("SMTPS", port 465).
    TLS = "TLS"


class SmtpCredentials(SpecModel):
    """A Secret with the SMTP account's user name and password."""

    name: _SecretName = Field(description="Name of the Secret.")
    username_key: _SecretKey = Field("username", description="Key holding the user name.")
    password_key: _SecretKey = Field("password", description="Key holding the password.")

    def key_refs(self) -> tuple[SecretKeyRef, SecretKeyRef]:
        """(user name, password) as references to their Secret's keys."""
        return (SecretKeyRef(name=self.name, key=self.username_key),
                SecretKeyRef(name=self.name, key=self.password_key))


class EmailChannel(SpecModel):
    """Email through an SMTP server: every subscribed event, like Slack."""

    host: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_RE)] = Field(
        description="SMTP server's host name or IPv4 address.")
    port: StrictInt = Field(587, ge=1, le=65535, description="SMTP server's port.")
    security: SmtpSecurity = Field(
        SmtpSecurity.START_TLS, description="StartTLS (port 587) or TLS (port 465).")
    credentials_secret_ref: SmtpCredentials | None = Field(
        None, description="The account to log in with; omit for a server that needs none.")
    ca_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret key holding the PEM CA bundle that verifies the server's "
                          "certificate (default: the system's CAs).")
    from_address: EmailAddress = Field(description="Sender address, e.g. alerts@stackforge.io.")
    to: Annotated[list[EmailAddress], Field(min_length=1, max_length=20),
                  AfterValidator(unique())] = Field(
        description="Recipients, e.g. ops@stackforge.io.",
        json_schema_extra={"x-kubernetes-list-type": "set"})


class LocalSecretRef(SpecModel):
    """A Secret in the referring object's namespace."""

    name: _SecretName = Field(description="Name of the Secret.")


class SmsEncoding(enum.StrEnum):
    """How the provider's API takes a message's fields."""

    FORM = "Form"  # application/x-www-form-urlencoded (Twilio, Vonage, Plivo's v1)
    JSON = "JSON"  # application/json (MessageBird, Vonage, Plivo)


class SmsFieldNames(SpecModel):
    """The names the provider gives a message's fields (Twilio's by default)."""

    to: _FieldName = Field("To", description="Field of the recipient's number.")
    from_: _FieldName = Field("From", alias="from", description="Field of the sender.")
    body: _FieldName = Field("Body", description="Field of the text.")


class SmsChannel(SpecModel):
    """Text messages through a provider's HTTP API, for critical incidents only
    (TenantNotReady, VolumeFull, RecoveryFailed, ArchivingFailed, TenantIsolated):
    one POST per recipient and message."""

    url_secret_ref: SecretKeyRef = Field(
        description="Secret key holding the API's messages URL (it may carry the account).")
    authorization_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret key holding the Authorization header's value, e.g. "
                          "'Basic <base64 of sid:token>' or 'AccessKey <key>'.")
    credential_fields_secret_ref: LocalSecretRef | None = Field(
        None, description="A Secret whose every key is sent as a field of each request "
                          "(api_key and api_secret for providers that want them so).")
    encoding: SmsEncoding = Field(SmsEncoding.FORM, description="Form or JSON.")
    field_names: SmsFieldNames = Field(
        default_factory=SmsFieldNames, description="The provider's names of the fields.")
    from_number: Annotated[str, Field(min_length=1, max_length=16,
                                      pattern=r"^(\+[1-9][0-9]{6,14}|[A-Za-z0-9]{1,11})$")] = Field(
        description="Sender: an E.164 number or an alphanumeric sender ID.")
    to: Annotated[list[PhoneNumber], Field(min_length=1, max_length=10),
                  AfterValidator(unique())] = Field(
        description="Recipients' E.164 numbers.",
        json_schema_extra={"x-kubernetes-list-type": "set"})


class SlackChannel(SpecModel):
    """A Slack incoming webhook."""

    webhook_url_secret_ref: SecretKeyRef = Field(
        description="Secret key holding the webhook URL (URLs are credentials)."
    )
    channel: (
        Annotated[str, Field(min_length=2, max_length=81, pattern=r"^#[a-z0-9_-]+$")] | None
    ) = Field(None, description="Channel override, e.g. #stackforge-alerts.")


class WebhookChannel(SpecModel):
    """A generic HTTP webhook receiving JSON events."""

    name: DNSLabel = Field(description="Name of the webhook, unique within the tenant.")
    url_secret_ref: SecretKeyRef = Field(description="Secret key holding the webhook URL.")


class NotificationsSpec(SpecModel):
    """Where to send alerts about the tenant."""

    cel_rules = (
        Rule(
            cel="has(self.slack) || (has(self.webhooks) && size(self.webhooks) > 0)"
                " || has(self.email) || has(self.sms)",
            message="notifications must name at least one channel: slack, webhooks, email "
                    "or sms",
            check=lambda n: (n.slack is not None or bool(n.webhooks) or n.email is not None
                             or n.sms is not None),
        ),
    )

    slack: SlackChannel | None = Field(None, description="Slack channel.")
    email: EmailChannel | None = Field(None, description="Email through an SMTP server.")
    sms: SmsChannel | None = Field(
        None, description="Text messages through a provider's HTTP API (critical incidents).")
    webhooks: Annotated[
        list[WebhookChannel], Field(max_length=10), AfterValidator(unique("name"))
    ] = Field(
        default_factory=list, description="Generic webhooks.", json_schema_extra=list_map("name")
    )
    events: Annotated[list[NotificationEvent], Field(max_length=16)] | None = Field(
        None,
        description="Events to send. Default: all.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class QuotaSpec(SpecModel):
    """Overrides of the tier's namespace ResourceQuota."""

    cpu: Quantity | None = Field(None, description="Total CPU requests.")
    memory: Quantity | None = Field(None, description="Total memory requests.")
    storage: StorageSize | None = Field(None, description="Total requested storage.")
    pods: StrictInt | None = Field(None, ge=1, le=10000, description="Maximum number of pods.")


class NodesSpec(SpecModel):
    """Overrides of the tier's node sizing used by the cost estimate."""

    size: NodeSize | None = Field(None, description="Node size: 2cpu-4gb, 4cpu-8gb or 8cpu-16gb.")
    count: StrictInt | None = Field(None, ge=1, le=100, description="Number of nodes.")


class RecoverySource(SpecModel):
    """Another tenant's physical backups, restored into this tenant's new database."""

    tenant: DNSLabel = Field(
        description="The tenant whose backups are restored (names are unique in the cluster)."
    )
    backup_policy: DNSLabel | None = Field(
        None,
        description=(
            "Its BackupPolicy whose archive is restored; it must list this tenant's "
            "namespace in continuousArchiving.allowedRestoreNamespaces. Default: its "
            "policy that archives."
        ),
    )
    point_in_time: datetime | None = Field(
        None,
        description=(
            "RFC 3339: the source's database as it was at that moment (every transaction "
            "committed at or before it, none after); it must be inside the policy's "
            "recoverability window. Default: the last archived moment."
        ),
    )


class DumpSource(SpecModel):
    """Another tenant's logical dumps (its nightly pg_dump backups), restored into this
    tenant's new database with their owners and grants."""

    cel_rules = (
        Rule(
            cel="!(has(self.backupId) && has(self.finishedBefore))",
            message="backupId and finishedBefore each choose the dump: give one of them",
            field_path=".finishedBefore",
            check=lambda d: d.backup_id is None or d.finished_before is None,
        ),
    )

    tenant: DNSLabel = Field(
        description="The tenant whose dump is restored (names are unique in the cluster)."
    )
    backup_policy: DNSLabel | None = Field(
        None,
        description=(
            "Its BackupPolicy whose dumps are restored; it must list this tenant's namespace "
            "in allowedDumpRestoreNamespaces. Default: its only policy that dumps PostgreSQL."
        ),
    )
    backup_id: RunId | None = Field(
        None, description="The backup run whose dump is restored (YYYYMMDDTHHMMSSZ-<suffix>, "
                          "as the policy's status names it). Default: the newest complete one.")
    finished_before: datetime | None = Field(
        None, description="RFC 3339: the newest complete dump finished at or before it.")


class Bootstrap(SpecModel):
    """Where a new tenant's database comes from, instead of an empty one."""

    cel_rules = (
        Rule(
            cel="has(self.recovery) != has(self.logical)",
            message="bootstrap takes exactly one of recovery and logical",
            field_path=".recovery",
            check=lambda b: (b.recovery is None) != (b.logical is None),
        ),
    )

    recovery: RecoverySource | None = Field(
        None,
        description=(
            "Restore another tenant's physical backups (a clone): the primary's first "
            "start restores them, then archives under this tenant's own path."
        ),
    )
    logical: DumpSource | None = Field(
        None,
        description=(
            "Restore another tenant's logical dump, for tenants with only logical backups: "
            "once the new primary is Ready, a runner restores the dump into its database in "
            "one transaction, keeping owners and grants (a role the dump names and this "
            "tenant lacks is made NOLOGIN); the apps and read replicas start after it."
        ),
    )


def reserved_namespace(namespace: str) -> bool:
    # Twin of admission.NAMESPACE_ALLOWED (the admission policy's CEL).
    return namespace.startswith(RESERVED_NAMESPACE_PREFIX) or namespace in RESERVED_NAMESPACES


class SuspendWindow(SpecModel):
    """A recurring time during which the tenant is suspended (a dev environment at
    night): it opens when ``start`` fires and closes when ``end`` fires."""

    cel_rules = (
        Rule(
            cel="self.start != self.end",
            message="a suspend window's start and end must be different schedules",
            check=lambda w: w.start != w.end,
        ),
    )

    start: Cron = Field(description="When the window opens, e.g. '0 20 * * 1-5'.")
    end: Cron = Field(description="When it closes, e.g. '0 7 * * 1-5'.")
    time_zone: TimeZone = Field("UTC", description="IANA time zone of both schedules.")


class StackForgeTenantSpec(SpecModel):
    """Desired state of a tenant's stack."""

    cel_rules = (
        Rule(
            cel="!has(self.tls) || has(self.domain)",
            message="tls requires domain",
            field_path=".tls",
            check=lambda s: s.tls is None or s.domain is not None,
        ),
        Rule(
            cel="has(self.bootstrap) == has(oldSelf.bootstrap) && "
                "(!has(self.bootstrap) || self.bootstrap == oldSelf.bootstrap)",
            message="bootstrap is immutable: it says where the database came from",
            field_path=".bootstrap",
            check_update=lambda old, new: old.bootstrap == new.bootstrap,
        ),
    )

    tier: Tier = Field(description="Service tier: Starter, Growth or Enterprise.")
    provider: Provider = Field(
        Provider.DIGITALOCEAN,
        description="Cloud provider priced by the cost estimate: digitalocean, aws or linode.",
    )
    suspend: StrictBool = Field(
        False, description="Scale every workload to zero, keeping data and configuration."
    )
    suspend_windows: Annotated[list[SuspendWindow], Field(max_length=7)] = Field(
        default_factory=list,
        description="Recurring windows during which the tenant is suspended as by "
                    "spec.suspend (dev environments out of hours); resumed when they close.")
    isolate: StrictBool = Field(
        False,
        description="Security incident switch: cut all ingress and egress except the operator's.",
    )
    domain: Domain | None = Field(None, description="Custom domain served through Kong.")
    tls: TLSSpec | None = Field(None, description="TLS for the domain.")
    components: Annotated[ComponentsSpec, ServerDefault({})] = Field(
        default_factory=ComponentsSpec, description="Components of the stack."
    )
    admin_accounts: Annotated[
        list[AdminAccount],
        Field(max_length=20),
        AfterValidator(unique("username")),
        AfterValidator(_admin_secret_names_distinct),
    ] = Field(
        default_factory=list,
        description="Customer administrator accounts, unique by username.",
        json_schema_extra=list_map("username"),
    )
    backup: BackupCadence | None = Field(None, description="Backup cadence.")
    drill: DrillCadence | None = Field(None, description="Disaster-recovery drill cadence.")
    notifications: NotificationsSpec | None = Field(None, description="Alert channels.")
    quota: QuotaSpec | None = Field(None, description="Namespace quota overrides.")
    nodes: NodesSpec | None = Field(
        None, description="Node sizing overrides for the cost estimate."
    )
    bootstrap: Bootstrap | None = Field(
        None,
        description=(
            "Create the database from another tenant's backups instead of empty. "
            "Immutable; only the first start of the primary uses it."
        ),
    )


def tenant_name_rule() -> Rule:
    """Root-level rule: the name is used as a label value and inside child names."""
    return Rule(
        cel=(
            f"size(self.metadata.name) <= {MAX_TENANT_NAME} && "
            f"self.metadata.name.matches('{DNS_LABEL_RE}')"
        ),
        message=f"metadata.name must be a DNS label of at most {MAX_TENANT_NAME} characters",
        # No fieldPath: the CRD schema does not declare metadata's properties,
        # and the API server refuses a fieldPath it cannot resolve.
        check=lambda obj: (
            len(obj["metadata"]["name"]) <= MAX_TENANT_NAME
            and re.fullmatch(DNS_LABEL_RE, obj["metadata"]["name"]) is not None
        ),
    )


# --------------------------------------------------------------------------- status


class ComponentKind(enum.StrEnum):
    """Kinds of workloads a tenant runs."""

    POSTGRES = "Postgres"
    POOLER = "Pooler"
    REDIS = "Redis"
    KAFKA = "Kafka"
    KONG = "Kong"
    CONSUL = "Consul"
    APP = "App"


class ComponentStatus(StatusModel):
    """Observed state of one component."""

    name: str = Field(max_length=63, description="Component name (postgres, kong, an app's name).")
    kind: ComponentKind = Field(description="What kind of component this is.")
    ready: bool = Field(description="All desired replicas are ready.")
    replicas: int = Field(0, ge=0, description="Desired replicas.")
    ready_replicas: int = Field(0, ge=0, description="Ready replicas.")
    version: str | None = Field(None, max_length=64, description="Running version.")
    message: str | None = Field(None, max_length=1024, description="Why it is not ready.")


class ReplicaStatus(StatusModel):
    """One read replica: its lag as the primary sees it, and its last re-clone."""

    name: str = Field(max_length=253, description="The replica's pod.")
    streaming: bool | None = Field(
        None, description="It streams WAL from the primary now; unset while that is unknown."
    )
    state: str | None = Field(
        None, max_length=32,
        description="Its WAL sender's state on the primary (streaming, catchup).",
    )
    lag_bytes: int | None = Field(
        None, ge=0, description="WAL written on the primary that it has not replayed yet."
    )
    lag_seconds: float | None = Field(
        None, ge=0, description="How long its last replayed WAL took to replay (replay_lag)."
    )
    last_reclone_time: datetime | None = Field(
        None, description="When it was last thrown away and cloned anew from the primary."
    )
    last_reclone_reason: str | None = Field(
        None, max_length=1024, description="Why: the proof that it could not follow the primary."
    )


Money = Annotated[str, Field(max_length=32, pattern=r"^[0-9]+\.[0-9]{2}$")]


class CostStatus(StatusModel):
    """Monthly cost estimate (runbook Cost Management), decimal strings in USD."""

    provider: Provider = Field(description="Provider whose prices were used.")
    node_size: NodeSize = Field(description="Node size priced.")
    node_count: int = Field(ge=0, description="Nodes priced.")
    currency: Literal["USD"] = Field("USD", description="Currency of the amounts.")
    compute_monthly: Money = Field(description="Nodes per month.")
    storage_monthly: Money = Field(description="Block storage per month.")
    backup_monthly: Money = Field(description="Backup overhead per month (20 % of infrastructure).")
    infrastructure_monthly: Money = Field(description="Total infrastructure cost per month.")
    price_monthly: Money = Field(description="Customer price per month: infrastructure x 3.")
    suspended_share: float | None = Field(
        None, ge=0, le=1, description="Share of a week the tenant is kept suspended: 1 while "
                                      "spec.suspend holds, else what spec.suspendWindows "
                                      "cover.")
    scheduled_saving_monthly: Money | None = Field(
        None, description="Infrastructure not paid while suspended (spec.suspend, "
                          "spec.suspendWindows), per month (the amounts above are net of it).")


class LastBackupSummary(StatusModel):
    """The newest backup run of the tenant's BackupPolicies."""

    policy: str = Field(max_length=253, description="BackupPolicy that ran it.")
    run_id: str = Field(max_length=128, description="Run identifier.")
    result: RunResult = Field(description="Outcome of the run.")
    completion_time: datetime | None = Field(None, description="When it finished.")
    last_success_time: datetime | None = Field(
        None, description="When the newest complete backup finished (of any policy)."
    )
    size_bytes: int | None = Field(None, ge=0, description="Total size of the artifacts.")


class LastDrillSummary(StatusModel):
    """The newest finished DR drill of the tenant."""

    drill: str = Field(max_length=253, description="DRDrill that ran it.")
    run_id: str = Field(max_length=128, description="Run identifier.")
    verdict: Verdict = Field(description="Passed or Failed.")
    completion_time: datetime | None = Field(None, description="When it finished.")
    rto_seconds: int | None = Field(None, ge=0, description="Measured recovery time.")
    rpo_seconds: int | None = Field(None, ge=0, description="Measured recovery point age.")


# The runbook's weekly certificate check: "alert if < 30 days". CertificatesValid
# turns False, and CertificateExpiring is notified, inside this window.
CERTIFICATE_WARNING_DAYS = 30


class ResourceUsage(StatusModel):
    """One resource: what the pods request, the quota, and what they use."""

    requested: str | None = Field(None, max_length=64,
                                  description="Requested by the tenant's pods (the quota's count).")
    quota: str | None = Field(None, max_length=64, description="The namespace's quota.")
    used: str | None = Field(None, max_length=64,
                             description=("Used now (CPU and memory: the metrics API; "
                                          "storage: the kubelets); absent when not measured."))


class VolumeUsage(StatusModel):
    """One volume claim of the tenant, as its node's kubelet measures it."""

    claim: str = Field(max_length=253, description="The PersistentVolumeClaim.")
    used: str = Field(max_length=64, description="Bytes used on the volume's filesystem.")
    capacity: str | None = Field(None, max_length=64,
                                 description="The filesystem's capacity, as the kubelet sees it.")


class UsageStatus(StatusModel):
    """The tenant's usage for capacity planning and billing."""

    cpu: ResourceUsage = Field(description="CPU (cores).")
    memory: ResourceUsage = Field(description="Memory (bytes).")
    storage: ResourceUsage = Field(description=(
        "Volume storage (bytes): requested, the quota, and used, the sum of the claims' "
        "measured use."))
    pods: ResourceUsage = Field(description="Pods.")
    measured_by: str | None = Field(None, max_length=64,
                                    description="Where the used figures come from.")
    unmeasured: str | None = Field(None, max_length=256,
                                   description="Why there are no used figures.")
    volumes: list[VolumeUsage] = Field(default_factory=list, max_length=64, description=(
        "Each claim's use, from the kubelets' statistics of the nodes its pods run on."))
    volumes_measured_by: str | None = Field(None, max_length=64,
                                            description="Where the volume figures come from.")
    volumes_unmeasured: str | None = Field(None, max_length=256,
                                           description="Why there are no volume figures.")
    observed_at: datetime = Field(description=(
        "When these figures were read; without measured use, when they were "
        "first seen (unchanged quota counts are not written again)."))


class EvidenceStatus(StatusModel):
    """The evidence bundle captured when the tenant was last isolated."""

    isolated_at: datetime = Field(description="When the isolation it belongs to was seen.")
    location: str | None = Field(None, max_length=2048,
                                 description="s3://bucket/key of the bundle (.tar.gz).")
    sha256: str | None = Field(None, max_length=64, description="The bundle's SHA-256.")
    files: int | None = Field(None, ge=0, description="Files in the bundle.")
    captured_at: datetime | None = Field(None, description="When it was written.")
    error: str | None = Field(None, max_length=1024,
                              description="Why it is not captured yet (retried).")


class CertificateStatus(StatusModel):
    """The TLS certificate served for the domain."""

    secret_name: str = Field(max_length=253, description="Secret holding the certificate.")
    not_after: datetime | None = Field(None, description="Expiry time.")
    days_remaining: int | None = Field(None, description="Whole days until expiry.")


# status.incidents' maxItems; notify/changes.py never remembers more.
MAX_INCIDENTS = 64


class OpenIncident(StatusModel):
    """An incident the tenant's channels were told about, until it resolves.

    Kept in status (not in the operator's memory) so that one incident gives
    one message however often the tenant is reconciled and across restarts.
    """

    key: str = Field(
        max_length=320,
        description="Incident identity: event and subject, e.g. BackupFailed/nightly.",
    )
    event: NotificationEvent = Field(description="What kind of incident this is.")
    since: datetime = Field(description="When the condition behind it began.")


class BootstrapMethod(enum.StrEnum):
    """What a tenant's database was created from."""

    PHYSICAL = "Physical"  # spec.bootstrap.recovery: pgBackRest backups and WAL
    LOGICAL = "Logical"  # spec.bootstrap.logical: a pg_dump backup run


class BootstrapStatus(StatusModel):
    """The restore a tenant's database was created from (spec.bootstrap), fixed when it began."""

    method: BootstrapMethod = Field(BootstrapMethod.PHYSICAL, description="Physical or Logical.")
    source_tenant: str = Field(max_length=63, description="The tenant restored from.")
    source_namespace: str = Field(max_length=63, description="Its namespace.")
    backup_policy: str = Field(max_length=253, description="Its BackupPolicy restored from.")
    repository_path: str | None = Field(
        None, max_length=1024, description="Physical: the pgBackRest repository (repo1-path) "
                                           "restored."
    )
    recovery_target: str | None = Field(
        None, max_length=64, description="Physical: the moment restored to (RFC 3339), or latest."
    )
    backup: str | None = Field(
        None, max_length=160, description="Logical: the dump asked for: latest, a run id, or "
                                          "before=<RFC 3339>."
    )
    backup_id: str | None = Field(
        None, max_length=128, description="Logical: the backup run whose dump was restored."
    )
    job_name: str | None = Field(None, max_length=63,
                                 description="Logical: the Job restoring the dump.")
    message: str | None = Field(
        None, max_length=2048, description="Logical: why the last restore attempt failed."
    )
    kept_volume: str | None = Field(
        None, max_length=253,
        description=("The primary's data volume that already held a database when the tenant "
                     "was made (made again in place): nothing was restored over it."))
    archive_fingerprint: str | None = Field(
        None, max_length=64,
        description=("A digest of the BackupPolicy's storage and repository cipher when the "
                     "restore began: the archive it restores must stay where it was."))
    start_time: datetime = Field(description="When the restore was set up.")
    completion_time: datetime | None = Field(
        None,
        description=(
            "Physical: when the restored primary was first Ready (promoted, this tenant's "
            "passwords set). Logical: when the dump was restored and verified. The copies of "
            "the source's Secrets are deleted then."
        ),
    )


class RecoveryPhase(enum.StrEnum):
    """Where an in-place recovery is (reconcile/recovery.py has the steps)."""

    REFUSED = "Refused"
    STOPPING_WRITES = "StoppingWrites"
    RESTORING = "Restoring"
    VERIFYING = "Verifying"
    SWITCHING_OVER = "SwitchingOver"
    ROLLING_BACK = "RollingBack"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    # No recovery of this tenant object: made again over the claims one left, it
    # serves the database the last recovery ended on (reconcile/recovery.py).
    ADOPTED = "Adopted"


ClaimName = Annotated[str, Field(max_length=253)]


class RecoveryStep(StatusModel):
    """One step of an in-place recovery, as it ran."""

    name: str = Field(max_length=32, description="StopWrites, Restore, Verify, SwitchOver "
                                                 "or RollBack.")
    start_time: datetime = Field(description="When the step began.")
    completion_time: datetime | None = Field(None, description="When it ended.")
    message: str | None = Field(None, max_length=1024, description="How it ended.")


class EndedRecovery(StatusModel):
    """How the last in-place recovery that ran ended, kept while later requests are
    refused: a refusal starts nothing, so it does not undo what that one left."""

    request: str = Field(max_length=64, description="The recover-to annotation it answered.")
    phase: RecoveryPhase = Field(description="Succeeded or Failed.")
    message: str | None = Field(None, max_length=2048, description="Why it ended so.")
    recovery_target: str | None = Field(
        None, max_length=64, description="The moment it restored to (RFC 3339).")
    verify_drill: str | None = Field(
        None, max_length=253, description="The DRDrill whose queries verified it.")
    start_time: datetime | None = Field(None, description="When it began.")
    completion_time: datetime | None = Field(None, description="When it ended.")


class RecoveryStatus(StatusModel):
    """The tenant's latest in-place recovery (asked with the recover-to and
    recover-confirm annotations, docs/api.md)."""

    request: str = Field(max_length=64, description="The recover-to annotation it answers.")
    phase: RecoveryPhase = Field(description="Where it is.")
    message: str | None = Field(None, max_length=2048, description="Why it is there.")
    recovery_target: str | None = Field(
        None, max_length=64, description="The moment restored to (RFC 3339).")
    backup_policy: str | None = Field(None, max_length=253,
                                      description="The BackupPolicy restored from.")
    repository_path: str | None = Field(
        None, max_length=1024, description="The pgBackRest repository (repo1-path) restored.")
    verify_drill: str | None = Field(
        None, max_length=253, description="The DRDrill whose queries verified the database.")
    archive_fingerprint: str | None = Field(
        None, max_length=64,
        description=("A digest of the BackupPolicy's storage and repository cipher when the "
                     "restore began: the archive it restores must stay where it was."))
    previous_ordinal: int = Field(
        0, ge=0, description="The primary's pod ordinal (and volume) before the recovery.")
    ordinal: int = Field(0, ge=0, description="The restored primary's pod ordinal.")
    start_time: datetime | None = Field(None, description="When the recovery began.")
    completion_time: datetime | None = Field(None, description="When it succeeded or failed.")
    asked_time: datetime | None = Field(
        None, description=("When the refused request was first seen: it is looked at again "
                           "until STACKFORGE_RECOVERY_REQUEST_SECONDS (1 h) after, then no "
                           "more until asked again."))
    steps: Annotated[list[RecoveryStep], Field(max_length=8)] = Field(
        default_factory=list, description="Every step, in order, with its times.")
    kept_volumes: Annotated[list[ClaimName], Field(max_length=KEPT_VOLUMES_MAX)] = Field(
        default_factory=list,
        description=("Claims a recovery left (the old database's after a success, the "
                     "restore's after a roll-back), kept until a person deletes them."))
    last_ended: EndedRecovery | None = Field(
        None, description=("While a request is Refused: how the last recovery that ran "
                           "ended (a Failed one stays notified until another starts)."))


class SuspendWindowStatus(StatusModel):
    """Whether a suspend window holds the tenant suspended, and until when."""

    open: bool = Field(description="A window is open: the tenant is suspended by it.")
    next_change: datetime | None = Field(
        None, description="The next time a window opens or closes.")


class StackForgeTenantStatus(StatusModel):
    """Observed state of a tenant (kstatus conventions, see docs/api.md)."""

    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation this status describes."
    )
    conditions: Conditions = condition_list_field()
    replicas: int | None = Field(
        None, ge=0, description="Gateway replicas (scale subresource statusReplicasPath)."
    )
    ready_replicas: int | None = Field(None, ge=0, description="Ready gateway replicas.")
    selector: str | None = Field(
        None,
        max_length=1024,
        description="Label selector of the gateway pods (scale subresource labelSelectorPath).",
    )
    components: Annotated[list[ComponentStatus], Field(max_length=64)] = Field(
        default_factory=list,
        description="Per-component readiness.",
        json_schema_extra=list_map("name"),
    )
    components_ready: str | None = Field(
        None, max_length=16, description="Ready components out of wanted ones, e.g. 6/7."
    )
    endpoint: str | None = Field(None, max_length=2048, description="URL the tenant is served at.")
    cost: CostStatus | None = Field(None, description="Monthly cost estimate.")
    last_backup: LastBackupSummary | None = Field(None, description="Newest backup run.")
    last_drill: LastDrillSummary | None = Field(None, description="Newest finished DR drill.")
    certificate: CertificateStatus | None = Field(None, description="TLS certificate state.")
    suspended: bool | None = Field(None, description="Workloads are scaled to zero.")
    suspend_window: SuspendWindowStatus | None = Field(
        None, description="The suspend windows' state, when the spec has some.")
    isolated: bool | None = Field(
        None, description="Isolation network policies are in force, or their lift has not "
                          "settled yet (the Isolated condition says which).")
    evidence: EvidenceStatus | None = Field(
        None, description="Logs and objects captured to the backup bucket when isolated.")
    usage: UsageStatus | None = Field(
        None, description="Requested vs quota vs used, refreshed every few minutes.")
    credentials_rotated_at: datetime | None = Field(
        None, description="When generated credentials were last rotated."
    )
    replication: Annotated[list[ReplicaStatus], Field(max_length=16)] = Field(
        default_factory=list,
        description="The PostgreSQL read replicas, in pod order.",
        json_schema_extra=list_map("name"),
    )
    incidents: Annotated[list[OpenIncident], Field(max_length=MAX_INCIDENTS)] = Field(
        default_factory=list,
        description="Open incidents already notified; each is notified again once, resolved.",
        json_schema_extra=list_map("key"),
    )
    bootstrap: BootstrapStatus | None = Field(
        None, description="The restore the database was created from (spec.bootstrap)."
    )
    recovery: RecoveryStatus | None = Field(
        None, description="The latest in-place recovery of the database.")
