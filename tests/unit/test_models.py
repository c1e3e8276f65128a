"""The pydantic models: defaults, tier resolution, validators, update rules."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from stackforge_operator.models import (
    TIERS,
    BackupPolicySpec,
    DRDrillSpec,
    StackForgeTenantSpec,
    StackForgeTenantStatus,
    Tier,
    update_violations,
)
from stackforge_operator.models.cel import Rule
from stackforge_operator.models.common import (
    _CRON,
    field_path,
    parse_quantity,
)
from stackforge_operator.models.effective import resolve
from stackforge_operator.models.tenant import AppEgressRule
from stackforge_operator.models.tiers import NODE_PRICE_USD, NodeSize, Provider
from tests.cluster.admission_cases import example


def _errors(model: type[BaseModel], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return "\n".join(f"{field_path(tuple(e['loc']))}: {e['msg']}" for e in info.value.errors())


def _bp(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tenantRef": {"name": "acme"},
        "storage": {"bucket": "backups"},
        "retention": {"keepLast": 7},
    }
    return {**base, **spec}


# --------------------------------------------------------------------------- defaults


def test_minimal_tenant_takes_everything_from_its_tier() -> None:
    spec = StackForgeTenantSpec.model_validate({"tier": "Starter"})
    assert spec.provider is Provider.DIGITALOCEAN
    assert spec.components.postgres.version == 15
    assert spec.components.apps == []
    eff = resolve("globex", spec, namespace="tenant-globex")
    starter = TIERS[Tier.STARTER]
    assert eff.namespace == "tenant-globex"
    assert (eff.postgres.enabled, eff.redis.enabled) == (True, True)
    assert (eff.kafka.enabled, eff.consul.enabled) == (False, False)
    assert eff.kong.replicas == starter.kong_replicas
    assert eff.postgres.storage == starter.postgres_storage
    assert eff.postgres.pooler.enabled is False
    assert eff.backup_schedule == "0 2 * * *"  # runbook: daily at 2 AM
    assert eff.backup_time_zone == "Etc/UTC"
    assert eff.drill_schedule == starter.drill_schedule
    assert eff.node_size is NodeSize.CPU4_8GB


def test_spec_overrides_win_over_tier() -> None:
    spec = StackForgeTenantSpec.model_validate(
        {
            "tier": "Growth",
            "components": {
                "postgres": {"storage": "80Gi", "readReplicas": 0, "pooler": {"enabled": False}},
                "kafka": {"enabled": False},
                "kong": {"replicas": 5},
                "apps": [
                    {
                        "name": "api",
                        "image": "acme/api:1",
                        "port": 80,
                        "autoscaling": {"minReplicas": 3, "maxReplicas": 9},
                    },
                    {"name": "worker", "image": "acme/worker:1", "port": 9000, "replicas": 4},
                    {"name": "web", "image": "acme/web:1", "port": 3000},
                ],
            },
            "quota": {"cpu": "12", "pods": 150},
            "nodes": {"size": "4cpu-8gb", "count": 2},
            "drill": {"rtoSeconds": 900},
        }
    )
    eff = resolve("acme", spec, namespace="acme-prod")
    growth = TIERS[Tier.GROWTH]
    assert eff.namespace == "acme-prod"
    assert eff.postgres.storage == "80Gi"
    assert eff.postgres.read_replicas == 0
    assert eff.postgres.pooler.enabled is False
    assert eff.kafka.enabled is False
    assert eff.kong.replicas == 5
    api, worker, web = eff.apps
    assert (api.autoscaling, api.min_replicas, api.max_replicas) == (True, 3, 9)
    assert api.target_cpu_utilization == 80
    # explicit replicas without an autoscaling block: fixed size
    assert (worker.autoscaling, worker.replicas) == (False, 4)
    assert (web.autoscaling, web.min_replicas, web.max_replicas) == (
        True,
        growth.app_min_replicas,
        growth.app_max_replicas,
    )
    assert web.path == "/web"
    assert (eff.quota.cpu, eff.quota.pods, eff.quota.memory) == ("12", 150, growth.quota.memory)
    assert (eff.node_size, eff.node_count) == (NodeSize.CPU4_8GB, 2)
    assert (eff.rto_seconds, eff.rpo_seconds) == (900, growth.rpo_seconds)


def test_partial_resource_override_keeps_other_tier_values() -> None:
    spec = StackForgeTenantSpec.model_validate(
        {
            "tier": "Enterprise",
            "components": {"redis": {"resources": {"limits": {"memory": "4Gi"}}}},
        }
    )
    res = resolve("x", spec, namespace="tenant-x").redis.resources
    tier = TIERS[Tier.ENTERPRISE].redis_res
    assert res.memory_limit == "4Gi"
    assert (res.cpu_request, res.memory_request, res.cpu_limit) == (
        tier.cpu_request,
        tier.memory_request,
        tier.cpu_limit,
    )


def test_a_request_or_limit_the_spec_sets_is_never_crossed_by_the_tiers_other() -> None:
    """The spec's check sees only what it sets: a request above the tier's limit (or
    a limit below its request, or either after a tier change) made a container the
    API server refuses, and the workload with it."""
    def postgres(tier: str, resources: dict[str, Any]) -> Any:
        spec = StackForgeTenantSpec.model_validate(
            {"tier": tier, "components": {"postgres": {"resources": resources}}})
        return resolve("x", spec, namespace="tenant-x").postgres.resources

    # Starter's PostgreSQL: 250m/512Mi requested, 1/1Gi limits.
    raised = postgres("Starter", {"requests": {"memory": "2Gi", "cpu": "2"}})
    assert (raised.memory_request, raised.memory_limit) == ("2Gi", "2Gi")
    assert (raised.cpu_request, raised.cpu_limit) == ("2", "2")
    lowered = postgres("Starter", {"limits": {"memory": "256Mi", "cpu": "100m"}})
    assert (lowered.memory_request, lowered.memory_limit) == ("256Mi", "256Mi")
    assert (lowered.cpu_request, lowered.cpu_limit) == ("100m", "100m")
    # Within the tier's other value: as before.
    kept = postgres("Starter", {"requests": {"memory": "768Mi"}})
    assert (kept.memory_request, kept.memory_limit) == ("768Mi", "1Gi")
    for tier in Tier:
        for res in (postgres(tier.value, {"requests": {"memory": "64Gi"}}),
                    postgres(tier.value, {"limits": {"memory": "1Mi"}})):
            assert parse_quantity(res.memory_request) <= parse_quantity(res.memory_limit)


@pytest.mark.parametrize("tier", list(Tier))
def test_tier_profiles_are_consistent(tier: Tier) -> None:
    t = TIERS[tier]
    assert t.tier is tier
    assert t.app_min_replicas <= t.app_max_replicas
    assert t.pool_size <= t.max_client_connections
    assert t.consul_replicas in (1, 3, 5)
    assert _CRON.fullmatch(t.backup_schedule) and _CRON.fullmatch(t.drill_schedule)
    assert t.rto_seconds > 0 and t.rpo_seconds > 0
    for res in (t.postgres_res, t.redis_res, t.kafka_res, t.kong_res, t.consul_res, t.app_res):
        assert parse_quantity(res.cpu_request) <= parse_quantity(res.cpu_limit)
        assert parse_quantity(res.memory_request) <= parse_quantity(res.memory_limit)
    for provider in Provider:
        assert t.node_size in NODE_PRICE_USD[provider]


def test_tiers_grow() -> None:
    s, g, e = (TIERS[t] for t in (Tier.STARTER, Tier.GROWTH, Tier.ENTERPRISE))
    assert parse_quantity(s.postgres_storage) < parse_quantity(g.postgres_storage)
    assert parse_quantity(g.postgres_storage) < parse_quantity(e.postgres_storage)
    assert s.rto_seconds >= g.rto_seconds >= e.rto_seconds


def test_runbook_price_table() -> None:
    # "$48 droplet -> $149/month Starter tier"; AWS is dearer for the same size.
    assert NODE_PRICE_USD[Provider.DIGITALOCEAN][TIERS[Tier.STARTER].node_size] == 48
    assert NODE_PRICE_USD[Provider.AWS][NodeSize.CPU8_16GB] == 140


def test_backup_policy_and_drill_defaults() -> None:
    bp = BackupPolicySpec.model_validate(_bp())
    assert [t.value for t in bp.targets] == ["Postgres", "Configuration"]
    assert bp.schedule is None  # resolved from the tenant, then the tier
    assert bp.storage.prefix == "stackforge"
    dr = DRDrillSpec.model_validate({"tenantRef": {"name": "acme"}})
    assert dr.backup.source.value == "Latest"
    assert dr.checks.row_counts and dr.checks.checksum
    assert dr.sandbox.ttl_seconds == 3600 and not dr.sandbox.keep_on_failure
    assert dr.history_limit == 10


def test_dump_is_camel_case_and_round_trips() -> None:
    spec = StackForgeTenantSpec.model_validate(example("StackForgeTenant")["spec"])
    dumped = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert "adminAccounts" in dumped
    assert "targetCPUUtilizationPercentage" in dumped["components"]["apps"][0]["autoscaling"]
    assert StackForgeTenantSpec.model_validate(dumped) == spec
    # snake_case names work in Python too
    assert StackForgeTenantSpec(tier=Tier.GROWTH, admin_accounts=[]).tier is Tier.GROWTH


def test_status_ignores_unknown_fields() -> None:
    status = StackForgeTenantStatus.model_validate({"replicas": 2, "fromTheFuture": True})
    assert status.replicas == 2


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("model", "data", "expected"),
    [
        (StackForgeTenantSpec, {"tier": "Gold"}, "tier"),
        (StackForgeTenantSpec, {}, "tier: Field required"),
        (StackForgeTenantSpec, {"tier": "Growth", "suspend": "yes"}, "suspend"),
        (StackForgeTenantSpec, {"tier": "Growth", "extra": 1}, "extra: Extra inputs"),
        (StackForgeTenantSpec, {"tier": "Growth", "components": {"mongo": {}}}, "components.mongo"),
        (StackForgeTenantSpec, {"tier": "Growth", "domain": "ex ample.com"}, "domain"),
        # The tenant lives in its namespace: the spec has no field to name another.
        (StackForgeTenantSpec, {"tier": "Growth", "namespace": "x"}, "namespace: Extra inputs"),
        (
            StackForgeTenantSpec,
            {
                "tier": "Growth",
                "domain": "a.example.com",
                "tls": {"secretName": "t", "issuerRef": {"name": "le"}},
            },
            "tls must set exactly one of issuerRef or secretName",
        ),
        (
            StackForgeTenantSpec,
            {"tier": "Growth", "tls": {"secretName": "t"}},
            "tls requires domain",
        ),
        (
            StackForgeTenantSpec,
            {
                "tier": "Growth",
                "components": {
                    "apps": [
                        {
                            "name": "a",
                            "image": "x",
                            "port": 1,
                            "autoscaling": {"minReplicas": 5, "maxReplicas": 2},
                        }
                    ]
                },
            },
            "components.apps[0].autoscaling: Value error, autoscaling.minReplicas must be",
        ),
        (
            StackForgeTenantSpec,
            {
                "tier": "Growth",
                "components": {
                    "apps": [
                        {"name": "a", "image": "x", "port": 1},
                        {"name": "a", "image": "y", "port": 2},
                    ]
                },
            },
            "components.apps: Value error, duplicate name: a",
        ),
        (
            StackForgeTenantSpec,
            {"tier": "Growth", "backup": {"schedule": "0 25 * * *"}},
            "backup.schedule: schedule must be a cron expression",
        ),
        (
            StackForgeTenantSpec,
            {
                "tier": "Growth",
                "components": {
                    "postgres": {
                        "resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}
                    }
                },
            },
            "resources.requests must not exceed resources.limits",
        ),
        (BackupPolicySpec, _bp(storage={}), "storage.bucket: Field required"),
        (BackupPolicySpec, _bp(retention={}), "retention must set at least one"),
        (
            BackupPolicySpec,
            _bp(retention={"monthly": 12, "maxAgeDays": 90}),
            "retention.maxAgeDays is shorter",
        ),
        (BackupPolicySpec, _bp(targets=["GrafanaDashboards"]), "grafana is required"),
        (
            BackupPolicySpec,
            _bp(storage={"bucket": "b", "endpoint": "s3.example.com"}),
            "storage.endpoint",
        ),
        (BackupPolicySpec, _bp(timeZone="+02:00"), "timeZone"),
        (
            DRDrillSpec,
            {"tenantRef": {"name": "a"}, "objectives": {"rtoSeconds": 0}},
            "objectives.rtoSeconds: Input should be greater than 0",
        ),
        (
            DRDrillSpec,
            {"tenantRef": {"name": "a"}, "backup": {"source": "ById"}},
            "backup.id is required with source ById",
        ),
        (
            DRDrillSpec,
            {"tenantRef": {"name": "a"}, "once": True, "schedule": "@monthly"},
            "once and schedule are mutually exclusive",
        ),
    ],
)
def test_validators_refuse_with_field_named_errors(
    model: type[BaseModel], data: dict[str, Any], expected: str
) -> None:
    assert expected in _errors(model, data)


@pytest.mark.parametrize(
    "cron",
    [
        "0 2 * * *",
        "*/15 * * * *",
        "0 2,14 * * *",
        "0 3 1 */3 *",
        "30 1 * * MON-FRI",
        "0 0 1 jan,jul ?",
        "5 4 * * sun",
        "@daily",
        "@hourly",
        "0-59/5 0-23 1-31 1-12 0-6",
    ],
)
def test_cron_accepted(cron: str) -> None:
    assert _CRON.fullmatch(cron)


@pytest.mark.parametrize(
    "cron",
    [
        "",
        "daily",
        "* * * *",
        "0 0 2 * * *",
        "60 * * * *",
        "0 24 * * *",
        "0 0 0 * *",
        "0 0 32 * *",
        "0 0 * 13 *",
        "0 0 * * 8",
        # Sunday as 7: robfig/cron (the CronJob controller's parser) refuses it,
        # and the API server then refused the policy's CronJob, unreported.
        "0 2 * * 7",
        "0 2 * * 5-7",
        "*/0 * * * *",
        "@every 5m",
        "TZ=UTC 0 2 * * *",
        "0 2 * * * ; rm -rf /",
    ],
)
def test_cron_refused(cron: str) -> None:
    assert not _CRON.fullmatch(cron)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1Gi", 2**30),
        ("500m", Decimal("0.5")),
        ("2", 2),
        (3, 3),
        ("1.5G", 1_500_000_000),
        ("1e3", 1000),
        ("128Mi", 128 * 2**20),
    ],
)
def test_parse_quantity(text: str | int, value: Decimal | int) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("bad", ["", ".", "1 Gi", "Gi", "-1"])
def test_parse_quantity_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(bad)


# --------------------------------------------------------------------------- updates


def _tenant(**components: Any) -> StackForgeTenantSpec:
    return StackForgeTenantSpec.model_validate({"tier": "Growth", "components": components})


def test_update_rules() -> None:
    old = _tenant(postgres={"version": 16, "storage": "50Gi"})
    assert update_violations(old, _tenant(postgres={"version": 16, "storage": "60Gi"})) == []
    for other in (15, 17):
        assert update_violations(old, _tenant(postgres={"version": other, "storage": "50Gi"})) == [
            "postgres.version cannot change on an existing tenant: its data files are of one "
            "major version; to move to another, create a new tenant with that version and "
            "restore a backup of this one into it"
        ]
    shrink = update_violations(old, _tenant(postgres={"version": 16, "storage": "10Gi"}))
    assert shrink == ["postgres.storage cannot shrink: volumes can only grow"]
    bp_old = BackupPolicySpec.model_validate(_bp())
    bp_new = BackupPolicySpec.model_validate(_bp(tenantRef={"name": "other"}))
    assert update_violations(bp_old, bp_new) == [
        "tenantRef is immutable: create another BackupPolicy for another tenant"
    ]


def test_bootstrap_is_fixed_at_creation() -> None:
    plain = StackForgeTenantSpec.model_validate({"tier": "Growth"})
    cloned = StackForgeTenantSpec.model_validate(
        {"tier": "Growth", "bootstrap": {"recovery": {"tenant": "acme"}}})
    moved = StackForgeTenantSpec.model_validate({"tier": "Growth", "bootstrap": {
        "recovery": {"tenant": "acme", "pointInTime": "2026-12-01T10:15:05Z"}}})
    message = ["bootstrap is immutable: it says where the database came from"]
    assert update_violations(cloned, cloned.model_copy()) == []
    for old, new in ((plain, cloned), (cloned, plain), (cloned, moved)):
        assert update_violations(old, new) == message


def test_rules_must_have_their_python_twin() -> None:
    with pytest.raises(ValueError, match="Python twin"):
        Rule(cel="self.a > 0", message="a must be positive")
    with pytest.raises(ValueError, match="check_update"):
        Rule(cel="self == oldSelf", message="immutable", check=lambda _: True)
    with pytest.raises(ValueError, match="one line"):
        Rule(cel="true", message="two\nlines", check=lambda _: True)


def test_field_path() -> None:
    assert field_path(("spec", "components", "apps", 0, "port")) == "spec.components.apps[0].port"


def test_endpoint_ca_names_a_secret_key_with_ca_crt_by_default() -> None:
    storage = {"bucket": "backups", "endpoint": "https://10.0.0.5:9000"}
    bp = BackupPolicySpec.model_validate(_bp(storage={**storage, "endpointCA": {"name": "s3-ca"}}))
    assert bp.storage.endpoint_ca is not None
    assert (bp.storage.endpoint_ca.name, bp.storage.endpoint_ca.key) == ("s3-ca", "ca.crt")
    dumped = bp.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["storage"]["endpointCA"] == {"name": "s3-ca", "key": "ca.crt"}
    assert BackupPolicySpec.model_validate(dumped) == bp
    # Unset: the system's CAs.
    assert BackupPolicySpec.model_validate(_bp(storage=storage)).storage.endpoint_ca is None


@pytest.mark.parametrize(("endpoint_ca", "where"), [
    ({"key": "ca.crt"}, "storage.endpointCA.name"),
    ({"name": "S3_CA"}, "storage.endpointCA.name"),
    ({"name": "s3-ca", "key": "ca/crt"}, "storage.endpointCA.key"),
    ({"name": "s3-ca", "namespace": "other"}, "storage.endpointCA.namespace"),
])
def test_endpoint_ca_refuses_bad_references(endpoint_ca: dict[str, Any], where: str) -> None:
    # No namespace field: the Secret is the policy's neighbour, like every *SecretRef.
    errors = _errors(BackupPolicySpec, _bp(storage={"bucket": "backups",
                                                    "endpointCA": endpoint_ca}))
    assert where in errors


@pytest.mark.parametrize(("cidr", "says"), [
    ("203.0.113.5/24", "host bits"),
    ("203.0.113.0", "write the CIDR as 203.0.113.0/32"),
    ("2001:DB8::/32", "write the CIDR as 2001:db8::/32"),
    ("payments.example", "not a CIDR"),
])
def test_app_egress_cidr_is_canonical_or_refused_with_the_fix(cidr: str, says: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        AppEgressRule.model_validate({"cidr": cidr, "ports": [{"port": 443}]})
    assert AppEgressRule.model_validate(
        {"cidr": "::/0", "except": ["fc00::/7"], "ports": [{"port": 443}]}).except_ == ["fc00::/7"]
