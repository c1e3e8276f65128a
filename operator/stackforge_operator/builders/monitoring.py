"""Prometheus Operator objects per tenant: the runbook's alert rules and a ServiceMonitor
per scraped component.

Applied only where the Prometheus Operator's CRDs exist (reconcile/tenant.py).
The thresholds are the runbook's "Monitoring & Alerting" list, written once in
THRESHOLDS so the rules, the docs and the tests read the same numbers. Every
expression is scoped to the tenant's namespace: one tenant's alerts never fire
on another's data, and the rule object can live in that namespace.

Metric names are those of the exporters the stack runs (builders/exporters.py),
cAdvisor/kubelet (CPU, memory, volumes) and kube-state-metrics (limits, pod
readiness); each alert says which in its ``source`` label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from stackforge_operator.builders.common import Manifest, metadata, selector_labels
from stackforge_operator.builders.exporters import (
    ARCHIVER_METRIC,
    METRICS_LABEL,
    METRICS_PORT_NAME,
    REPLICATION_LAG_METRIC,
    scrape_targets,
)
from stackforge_operator.models.effective import EffectiveTenant

API_VERSION: Final = "monitoring.coreos.com/v1"
RULE_NAME: Final = "stackforge-alerts"
COMPONENT: Final = "monitoring"
SCRAPE_INTERVAL: Final = "30s"


@dataclass(frozen=True)
class Thresholds:
    """The runbook's alert thresholds (Monitoring & Alerting)."""

    cpu_ratio: float = 0.80  # CPU usage > 80 % ...
    cpu_for: str = "5m"  # ... for 5 min
    memory_ratio: float = 0.90  # memory usage > 90 %
    disk_ratio: float = 0.85  # disk usage > 85 %
    error_ratio: float = 0.01  # error rate > 1 % of requests
    latency_p95_ms: float = 500.0  # p95 response time > 500 ms
    down_for: str = "2m"  # service down > 2 minutes
    db_connections_ratio: float = 0.80  # database connections > 80 % of max
    # A read replica more than this far behind the primary's WAL (64 MiB) ...
    replication_lag_bytes: int = 64 * 1024 * 1024
    replication_lag_for: str = "5m"  # ... for this long
    kafka_lag_window: str = "15m"  # Kafka lag increasing (over this window)
    # WAL archiving failing (its last failure newer than its last success), or no
    # segment archived for a timeout plus this margin (the heartbeat makes one
    # every timeout) ...
    archive_margin_seconds: int = 60
    archive_failing_for: str = "5m"  # ... for this long
    login_failure_spike: float = 3.0  # login failures at 3x their usual rate
    login_failure_min_per_second: float = 0.1  # ... and not a handful


THRESHOLDS: Final = Thresholds()


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    source: str


def alerts(t: EffectiveTenant, th: Thresholds = THRESHOLDS) -> list[Alert]:
    """The tenant's alerts; component alerts only for components it runs."""
    ns = f'namespace="{t.namespace}"'
    container = f'{ns}, container!="", container!="POD"'
    out = [
        Alert(
            "StackForgeHighCPU",
            f"sum by (namespace, pod, container) "
            f"(rate(container_cpu_usage_seconds_total{{{container}}}[5m]))"
            f" / on (namespace, pod, container) sum by (namespace, pod, container) "
            f'(kube_pod_container_resource_limits{{{ns}, resource="cpu"}}) > {th.cpu_ratio}',
            th.cpu_for, "warning",
            f"CPU above {th.cpu_ratio:.0%} of its limit for {th.cpu_for}", "cadvisor"),
        Alert(
            "StackForgeHighMemory",
            f"sum by (namespace, pod, container) "
            f"(container_memory_working_set_bytes{{{container}}})"
            f" / on (namespace, pod, container) sum by (namespace, pod, container) "
            f'(kube_pod_container_resource_limits{{{ns}, resource="memory"}})'
            f" > {th.memory_ratio}",
            "5m", "warning", f"memory above {th.memory_ratio:.0%} of its limit", "cadvisor"),
        Alert(
            "StackForgeDiskFilling",
            f"kubelet_volume_stats_used_bytes{{{ns}}} / kubelet_volume_stats_capacity_bytes{{{ns}}}"
            f" > {th.disk_ratio}",
            "5m", "warning", f"volume above {th.disk_ratio:.0%} full", "kubelet"),
        Alert(
            "StackForgeServiceDown",
            f"up{{{ns}}} == 0",
            th.down_for, "critical", f"a scrape target has been down for {th.down_for}",
            "prometheus"),
        # Per Kong service: the scrape (service_monitors, no honorLabels) sets
        # `service` to the metrics Service's name and keeps Kong's own label as
        # `exported_service`; by `service`, every route of the tenant was one sum,
        # a small service's failures lost in a busy one's traffic.
        Alert(
            "StackForgeHighErrorRate",
            f'sum by (namespace, exported_service) (rate(kong_http_requests_total{{{ns}, '
            f'code=~"5.."}}[5m]))'
            f" / sum by (namespace, exported_service) (rate(kong_http_requests_total{{{ns}}}[5m]))"
            f" > {th.error_ratio}",
            "5m", "critical", f"more than {th.error_ratio:.0%} of requests fail", "kong"),
        Alert(
            "StackForgeSlowResponses",
            f"histogram_quantile(0.95, sum by (namespace, exported_service, le) "
            f"(rate(kong_request_latency_ms_bucket{{{ns}}}[5m]))) > {th.latency_p95_ms:g}",
            "5m", "warning", f"p95 response time above {th.latency_p95_ms:g} ms", "kong"),
        Alert(
            "StackForgeLoginFailureSpike",
            f'sum by (namespace) (rate(kong_http_requests_total{{{ns}, code=~"401|403"}}[5m]))'
            f" > {th.login_failure_spike:g} * sum by (namespace) "
            f'(rate(kong_http_requests_total{{{ns}, code=~"401|403"}}[1h] offset 5m))'
            f' and sum by (namespace) (rate(kong_http_requests_total{{{ns}, code=~"401|403"}}[5m]))'
            f" > {th.login_failure_min_per_second:g}",
            "5m", "warning", "login failures spiking", "kong"),
    ]
    if t.postgres.enabled:
        out.append(Alert(
            "StackForgeDatabaseConnectionsHigh",
            f"sum by (namespace) (pg_stat_activity_count{{{ns}}})"
            f" / max by (namespace) (pg_settings_max_connections{{{ns}}})"
            f" > {th.db_connections_ratio}",
            "5m", "warning",
            f"database connections above {th.db_connections_ratio:.0%} of max_connections",
            "postgres-exporter"))
    if t.postgres.enabled and t.postgres.read_replicas > 0:
        # The primary's exporter reads pg_stat_replication (our own query,
        # builders/exporters.py): how far a replica's replay is behind the
        # primary's current WAL position.
        out.append(Alert(
            "StackForgeReplicationLagHigh",
            f"max by (namespace, replica) ({REPLICATION_LAG_METRIC}_lag_bytes{{{ns}}})"
            f" > {th.replication_lag_bytes}",
            th.replication_lag_for, "warning",
            f"a read replica is more than {th.replication_lag_bytes // (1024 * 1024)} MiB "
            "of WAL behind the primary",
            "postgres-exporter"))
    if t.postgres.enabled and t.archiving is not None:
        # What the database says (pg_stat_archiver through the exporter); the
        # policy's ContinuousArchiving says what reached the bucket.
        archived = f"max by (namespace) ({ARCHIVER_METRIC}_last_archived_time_seconds{{{ns}}})"
        failed = f"max by (namespace) ({ARCHIVER_METRIC}_last_failed_time_seconds{{{ns}}})"
        stale = t.archiving.archive_timeout_seconds + th.archive_margin_seconds
        out += [
            Alert("StackForgeWALArchivingFailing", f"{failed} > {archived}",
                  th.archive_failing_for, "critical",
                  "WAL archiving fails: the last failure is newer than the last success",
                  "postgres-exporter"),
            Alert("StackForgeWALArchiveStale", f"time() - {archived} > {stale}",
                  th.archive_failing_for, "critical",
                  f"no WAL segment archived for over {stale}s", "postgres-exporter"),
        ]
    if t.kafka.enabled:
        out.append(Alert(
            "StackForgeKafkaLagIncreasing",
            f"sum by (namespace, consumergroup) "
            f"(delta(kafka_consumergroup_lag{{{ns}}}[{th.kafka_lag_window}])) > 0"
            f" and sum by (namespace, consumergroup) (kafka_consumergroup_lag{{{ns}}}) > 0",
            th.kafka_lag_window, "warning", "a Kafka consumer group keeps falling behind",
            "kafka-exporter"))
    return out


def prometheus_rule(t: EffectiveTenant) -> Manifest:
    rules = [
        {
            "alert": a.name,
            "expr": a.expr,
            "for": a.duration,
            "labels": {"severity": a.severity, "tenant": t.name, "source": a.source},
            "annotations": {"summary": f"{t.name}: {a.summary}"},
        }
        for a in alerts(t)
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "PrometheusRule",
        "metadata": metadata(t, RULE_NAME, COMPONENT),
        "spec": {"groups": [{"name": f"stackforge.{t.name}", "rules": rules}]},
    }


def service_monitors(t: EffectiveTenant) -> list[Manifest]:
    monitors = []
    for target in scrape_targets(t):
        endpoint: dict[str, Any] = {"port": METRICS_PORT_NAME, "path": target.path,
                                    "interval": SCRAPE_INTERVAL}
        if target.params:
            endpoint["params"] = {k: [v] for k, v in target.params}
        monitors.append({
            "apiVersion": API_VERSION,
            "kind": "ServiceMonitor",
            "metadata": metadata(t, target.component, COMPONENT),
            "spec": {
                # The labels exporters._metrics_service puts on the Service.
                "selector": {"matchLabels": {
                    **selector_labels(t, target.component), METRICS_LABEL: "true"}},
                "namespaceSelector": {"matchNames": [t.namespace]},
                "endpoints": [endpoint],
            },
        })
    return monitors


def build(t: EffectiveTenant) -> list[Manifest]:
    return [prometheus_rule(t), *service_monitors(t)]
