"""PrometheusRule and ServiceMonitors: the runbook's thresholds, valid PromQL, right targets."""

from __future__ import annotations

import re
from dataclasses import replace

import promql_parser
import pytest
import yaml

from stackforge_operator.builders import (
    exporters,
    kafka,
    kong,
    monitoring,
    network,
    postgres,
    redis,
)
from stackforge_operator.builders.common import COMPONENT_LABEL, TENANT_LABEL
from stackforge_operator.models.backup import ObjectStorage
from stackforge_operator.models.common import SecretKeyRef
from stackforge_operator.models.effective import Archiving, EffectiveTenant
from tests.unit.builders.tenants import (
    ENTERPRISE,
    EVERYTHING_OFF,
    container,
    find,
    scenarios,
    tenant,
)


def _rules(t: EffectiveTenant) -> dict[str, dict[str, object]]:
    rule = monitoring.prometheus_rule(t)
    (group,) = rule["spec"]["groups"]
    return {r["alert"]: r for r in group["rules"]}


@pytest.mark.parametrize(("label", "t"), list(scenarios()))
def test_every_expression_is_valid_promql_scoped_to_the_tenant_namespace(
    label: str, t: EffectiveTenant
) -> None:
    for name, rule in _rules(t).items():
        expr = str(rule["expr"])
        promql_parser.parse(expr)  # raises ValueError on a syntax error
        selectors = re.findall(r"\w+\{([^}]*)\}", expr)
        assert selectors, name
        for selector in selectors:
            assert f'namespace="{t.namespace}"' in selector, (label, name, selector)


def test_the_runbooks_thresholds_are_in_the_rules() -> None:
    rules = _rules(tenant(ENTERPRISE))
    expected = {
        "StackForgeHighCPU": ("> 0.8", "5m"),
        "StackForgeHighMemory": ("> 0.9", None),
        "StackForgeDiskFilling": ("> 0.85", None),
        "StackForgeHighErrorRate": ("> 0.01", None),
        "StackForgeSlowResponses": ("> 500", None),
        "StackForgeServiceDown": ("== 0", "2m"),
        "StackForgeDatabaseConnectionsHigh": ("> 0.8", None),
        "StackForgeKafkaLagIncreasing": ("delta(kafka_consumergroup_lag", None),
        "StackForgeLoginFailureSpike": ("> 3 *", None),
        "StackForgeReplicationLagHigh": ("> 67108864", "5m"),
    }
    assert set(rules) == set(expected)
    for name, (fragment, duration) in expected.items():
        assert fragment in str(rules[name]["expr"]), name
        if duration:
            assert rules[name]["for"] == duration, name
    connections = str(rules["StackForgeDatabaseConnectionsHigh"]["expr"])
    assert "pg_stat_activity_count" in connections and "pg_settings_max_connections" in connections
    assert "histogram_quantile(0.95" in str(rules["StackForgeSlowResponses"]["expr"])
    # The primary exporter's own query (the real-node test reads it served), by replica.
    lag = str(rules["StackForgeReplicationLagHigh"]["expr"])
    assert "stackforge_replication_lag_bytes{" in lag and "by (namespace, replica)" in lag


def test_replication_lag_alert_only_with_read_replicas() -> None:
    assert "StackForgeReplicationLagHigh" not in _rules(
        tenant({"components": {"postgres": {"readReplicas": 0}}}))


def test_wal_archiving_alerts_only_where_a_policy_archives() -> None:
    assert not {"StackForgeWALArchivingFailing", "StackForgeWALArchiveStale"} & set(
        _rules(tenant()))
    archived = replace(tenant(), archiving=Archiving(
        policy="nightly", storage=ObjectStorage.model_validate({"bucket": "backups"}),
        archive_timeout_seconds=60, cipher=SecretKeyRef(name="c", key="k")))
    rules = _rules(archived)
    failing = str(rules["StackForgeWALArchivingFailing"]["expr"])
    assert ("stackforge_archiver_last_failed_time_seconds{" in failing
            and "> max by (namespace) (stackforge_archiver_last_archived_time_seconds{" in failing)
    stale = str(rules["StackForgeWALArchiveStale"]["expr"])
    assert stale.startswith("time() - ") and stale.endswith("> 120")
    for name in ("StackForgeWALArchivingFailing", "StackForgeWALArchiveStale"):
        promql_parser.parse(str(rules[name]["expr"]))
        assert rules[name]["labels"]["severity"] == "critical"  # type: ignore[index]


def test_the_archiver_query_names_every_metric_column() -> None:
    query = yaml.safe_load(exporters.POSTGRES_EXPORTER_QUERIES)[exporters.ARCHIVER_METRIC]
    columns = {name for m in query["metrics"] for name in m}
    assert columns == {"archived_count", "failed_count", "last_archived_time_seconds",
                       "last_failed_time_seconds"}
    for column in columns:
        assert f" AS {column}" in query["query"]


def test_component_alerts_only_for_components_that_run() -> None:
    rules = _rules(tenant(EVERYTHING_OFF))
    assert "StackForgeDatabaseConnectionsHigh" not in rules
    assert "StackForgeKafkaLagIncreasing" not in rules
    assert "StackForgeReplicationLagHigh" not in rules
    assert "StackForgeHighCPU" in rules


def test_alerts_carry_severity_and_tenant_labels() -> None:
    for rule in _rules(tenant()).values():
        labels = rule["labels"]
        assert isinstance(labels, dict)
        assert labels["tenant"] == "acme" and labels["severity"] in {"warning", "critical"}
        assert str(rule["annotations"]["summary"]).startswith("acme: ")  # type: ignore[index]


def test_one_service_monitor_per_scraped_component_selecting_its_metrics_service() -> None:
    t = tenant(ENTERPRISE)
    monitors = {m["metadata"]["name"]: m for m in monitoring.service_monitors(t)}
    assert set(monitors) == {"postgres", "redis", "kafka", "consul", "kong"}
    services = {s["metadata"]["name"]: s for s in exporters.metrics_services(t)}
    for component, monitor in monitors.items():
        service = services[f"{component}-metrics"]
        wanted = monitor["spec"]["selector"]["matchLabels"]
        assert wanted.items() <= service["metadata"]["labels"].items()
        assert wanted[TENANT_LABEL] == "acme" and wanted[COMPONENT_LABEL] == component
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [t.namespace]}
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == "metrics"
        assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    # Consul's exporter serves /metrics itself: no agent endpoint, no parameters.
    assert "params" not in monitors["consul"]["spec"]["endpoints"][0]


def test_kongs_alerts_group_by_its_own_service_label_as_the_scrape_keeps_it() -> None:
    """Without honorLabels the scrape's `service` (the metrics Service's name)
    wins and Kong's is kept as `exported_service`: grouped by `service`, every
    route of the tenant was one sum."""
    t = tenant(ENTERPRISE)
    [kong] = [m for m in monitoring.service_monitors(t) if m["metadata"]["name"] == "kong"]
    assert "honorLabels" not in kong["spec"]["endpoints"][0]
    rules = _rules(t)
    for name in ("StackForgeHighErrorRate", "StackForgeSlowResponses"):
        groupings = re.findall(r"by \(([^)]*)\)", str(rules[name]["expr"]))
        assert groupings and all("exported_service" in g.split(", ") for g in groupings), (
            name, groupings)


def test_nothing_scraped_for_components_switched_off() -> None:
    t = tenant(EVERYTHING_OFF)
    assert [m["metadata"]["name"] for m in monitoring.service_monitors(t)] == ["kong"]


def test_metrics_services_reach_the_exporter_ports_of_the_component_pods() -> None:
    t = tenant(ENTERPRISE)
    pods = {
        "postgres": find(postgres.build(t), "StatefulSet", "postgres"),
        "redis": find(redis.build(t), "StatefulSet", "redis"),
        "kafka": find(kafka.build(t), "StatefulSet", "kafka"),
        "kong": find(kong.build(t), "Deployment", "kong"),
    }
    for service in exporters.metrics_services(t):
        component = service["metadata"]["labels"][COMPONENT_LABEL]
        if component not in pods:
            continue
        template = pods[component]["spec"]["template"]
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        port = service["spec"]["ports"][0]["targetPort"]
        exposed = {p["containerPort"] for c in template["spec"]["containers"]
                   for p in c.get("ports", [])}
        assert port in exposed, (component, port, exposed)


def test_exporters_read_credentials_by_reference_only() -> None:
    t = tenant(ENTERPRISE)
    sidecar = container(find(postgres.build(t), "StatefulSet", "postgres"), "postgres-exporter")
    password = next(e for e in sidecar["env"] if e["name"] == "DATA_SOURCE_PASS")
    assert "value" not in password and password["valueFrom"]["secretKeyRef"]
    sidecar = container(find(redis.build(t), "StatefulSet", "redis"), "redis-exporter")
    password = next(e for e in sidecar["env"] if e["name"] == "REDIS_PASSWORD")
    assert "value" not in password and password["valueFrom"]["secretKeyRef"]


def test_exporters_are_seen_ready_within_a_second_of_listening() -> None:
    t = tenant(ENTERPRISE)
    for sidecar in (container(find(postgres.build(t), "StatefulSet", "postgres"),
                              "postgres-exporter"),
                    container(find(redis.build(t), "StatefulSet", "redis"), "redis-exporter")):
        assert sidecar["startupProbe"]["tcpSocket"] == sidecar["readinessProbe"]["tcpSocket"]
        assert sidecar["startupProbe"]["periodSeconds"] == 1
        assert sidecar["readinessProbe"]["periodSeconds"] == 20


def test_kong_serves_prometheus_metrics_through_its_plugin() -> None:
    config = kong.declarative_config(tenant())
    assert [p["name"] for p in config["plugins"]] == ["prometheus"]


def test_only_scraper_namespaces_reach_the_metrics_ports() -> None:
    t = tenant(ENTERPRISE)
    scraped = [f for f in network.flows(t) if f.source == network.SCRAPERS]
    targets = {(f.destination.name, f.ports) for f in scraped}
    assert targets == {(target.component, (("TCP", target.port),))
                       for target in exporters.scrape_targets(t)}
