"""Prometheus exporter sidecars and the per-component metrics Services they sit behind.

PostgreSQL, Redis and Kafka speak no Prometheus format themselves, so each
gets the community exporter as a sidecar next to the server it watches (it
talks to it over localhost, with the same Secret-backed credentials as the
server). Consul gets the Prometheus project's consul_exporter the same way: its
own agent endpoint (/v1/agent/metrics) is on the HTTP API's port, and a
scraper allowed there could read and write every key of the tenant's KV store
and catalog (Consul runs without ACLs). Kong serves metrics natively (its
status listener with the prometheus plugin). Every scraped component has a
``<component>-metrics`` Service exposing one port named ``metrics``: the
ServiceMonitors (builders/monitoring.py) select those Services, and the client
Services apps use stay free of scrape ports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from stackforge_operator import image_catalog
from stackforge_operator.builders.common import (
    CONSUL_HTTP_PORT,
    KAFKA_PORT,
    KONG_STATUS_PORT,
    POSTGRES_PORT,
    REDIS_PORT,
    Manifest,
    container_port,
    container_security_context,
    env,
    mount,
    secret_env,
    selector_labels,
    service,
    service_port,
    startup_probe,
)
from stackforge_operator.builders.secrets_names import (
    POSTGRES_SECRET,
    POSTGRES_SUPERUSER_PASSWORD_KEY,
    REDIS_PASSWORD_KEY,
    REDIS_SECRET,
)
from stackforge_operator.models.effective import EffectiveTenant

METRICS_PORT_NAME = "metrics"
# Label on every metrics Service; the ServiceMonitors select on it.
METRICS_LABEL = "stackforge.io/metrics"
POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121
KAFKA_EXPORTER_PORT = 9308
CONSUL_EXPORTER_PORT = 9107
# The lag of each read replica as the primary sees it, under names of our own
# (the operator reads them into the tenant's status; the alert watches them):
# stackforge_replication_lag_bytes / _lag_seconds{replica=<pod>, state=...}.
# replay_lag is NULL once an idle replica has caught up: no lag, not unknown.
REPLICATION_LAG_METRIC = "stackforge_replication"
_REPLICATION_LAG_QUERY = """\
SELECT application_name AS replica, state,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS lag_bytes,
       coalesce(extract(epoch FROM replay_lag), 0)::float8 AS lag_seconds
FROM pg_stat_replication WHERE replay_lsn IS NOT NULL"""
# pg_stat_archiver, as the WAL archiving alerts read it (builders/monitoring.py):
# stackforge_archiver_archived_count / _failed_count (since the statistics'
# reset) and the times of the last success and failure in seconds since the
# epoch (0: never). Archiving is judged from the bucket too
# (reconcile/archive_status.py); this is what the database itself says.
ARCHIVER_METRIC = "stackforge_archiver"
_ARCHIVER_QUERY = """\
SELECT archived_count::float8 AS archived_count, failed_count::float8 AS failed_count,
       coalesce(extract(epoch FROM last_archived_time), 0)::float8 AS last_archived_time_seconds,
       coalesce(extract(epoch FROM last_failed_time), 0)::float8 AS last_failed_time_seconds
FROM pg_stat_archiver"""
# How far the archive reaches, as the primary knows it:
# stackforge_archive_archived_through_seconds, the newest archiver heartbeat
# (images/postgres/stackforge-archiver.sh) whose commit is in a segment
# pg_stat_archiver reports archived (PostgreSQL archives segments in order), in
# seconds since the epoch; 0 when none is (no archiving, nothing archived since
# the statistics' reset). The operator bounds the recoverability window with
# it (reconcile/archive_status.py). The heartbeat table exists only where
# archiving was asked for, and a query naming a missing table fails: it is read
# through query_to_xml (dynamic SQL in core PostgreSQL) once it exists.
ARCHIVE_METRIC = "stackforge_archive"
ARCHIVED_THROUGH_SAMPLE = f"{ARCHIVE_METRIC}_archived_through_seconds"
_ARCHIVED_THROUGH_QUERY = """\
SELECT coalesce(CASE
  WHEN to_regclass('stackforge.heartbeat') IS NOT NULL AND last_archived_wal ~ '^[0-9A-F]{24}'
  THEN (xpath('/row/through/text()', query_to_xml(format(
    'SELECT extract(epoch FROM max(beat))::float8 AS through FROM stackforge.heartbeat '
    'WHERE segment <= %L', left(last_archived_wal, 24)), false, true, '')))[1]::text::float8
  END, 0)::float8 AS archived_through_seconds
FROM pg_stat_archiver"""
# Which incarnation's repository the primary archives into:
# stackforge_incarnation_beat_seconds{incarnation="<name>"}, the newest
# heartbeat row that names one, and its time (0 and "" when none does). A
# database restored from another carries that one's rows until its own
# archiver beats: the operator trusts a beat only if it is newer than the
# server's start (reconcile/archive_status.writing_incarnation). Dynamic SQL
# again: the column is missing until the archiver of this image adds it.
INCARNATION_METRIC = "stackforge_incarnation"
INCARNATION_SAMPLE = f"{INCARNATION_METRIC}_beat_seconds"
_INCARNATION_QUERY = """\
SELECT coalesce((xpath('/row/incarnation/text()', found.doc))[1]::text, '') AS incarnation,
       coalesce((xpath('/row/beat/text()', found.doc))[1]::text::float8, 0) AS beat_seconds
FROM (SELECT CASE WHEN EXISTS (
  SELECT FROM pg_attribute WHERE attrelid = to_regclass('stackforge.heartbeat')
    AND attname = 'incarnation' AND NOT attisdropped)
  THEN query_to_xml(
    'SELECT (array_agg(incarnation ORDER BY beat DESC))[1] AS incarnation, '
    'extract(epoch FROM max(beat))::float8 AS beat '
    'FROM stackforge.heartbeat WHERE incarnation IS NOT NULL', false, true, '')
  END AS doc) AS found"""
POSTGRES_EXPORTER_QUERIES = json.dumps({  # JSON is YAML: the exporter's format
    INCARNATION_METRIC: {
        "query": _INCARNATION_QUERY,
        "metrics": [
            {"incarnation": {"usage": "LABEL",
                             "description": "The incarnation the primary archives into"}},
            {"beat_seconds": {"usage": "GAUGE",
                              "description": "When its archiver last said so (0: never)"}},
        ],
    },
    ARCHIVE_METRIC: {
        "query": _ARCHIVED_THROUGH_QUERY,
        "metrics": [
            {"archived_through_seconds": {
                "usage": "GAUGE",
                "description": "Newest moment whose commits are all archived (0: unknown)"}},
        ],
    },
    ARCHIVER_METRIC: {
        "query": _ARCHIVER_QUERY,
        "metrics": [
            {"archived_count": {"usage": "COUNTER",
                                "description": "WAL segments archived successfully"}},
            {"failed_count": {"usage": "COUNTER",
                              "description": "Failed attempts to archive a WAL segment"}},
            {"last_archived_time_seconds": {
                "usage": "GAUGE", "description": "When a segment was last archived (0: never)"}},
            {"last_failed_time_seconds": {
                "usage": "GAUGE", "description": "When archiving last failed (0: never)"}},
        ],
    },
    REPLICATION_LAG_METRIC: {
        "query": _REPLICATION_LAG_QUERY,
        "metrics": [
            {"replica": {"usage": "LABEL", "description": "The replica's pod"}},
            {"state": {"usage": "LABEL", "description": "Its WAL sender's state"}},
            {"lag_bytes": {"usage": "GAUGE",
                           "description": "WAL written on the primary, not yet replayed"}},
            {"lag_seconds": {"usage": "GAUGE",
                             "description": "How long the last replayed WAL took to replay"}},
        ],
    },
}, indent=1, sort_keys=True) + "\n"
# Exporters are small and must fit in every tier's quota next to their server.
EXPORTER_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "10m", "memory": "32Mi"},
    "limits": {"cpu": "100m", "memory": "64Mi"},
}
# The project's Kafka exporter is a JVM (images/kafka): about 130 MiB resident,
# and a start that takes whole CPU-seconds.
KAFKA_EXPORTER_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "10m", "memory": "160Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}


@dataclass(frozen=True)
class ScrapeTarget:
    """One component's metrics endpoint: which pods, which port, which path."""

    component: str
    port: int
    path: str = "/metrics"
    params: tuple[tuple[str, str], ...] = ()

    @property
    def service_name(self) -> str:
        return f"{self.component}-metrics"


def scrape_targets(t: EffectiveTenant) -> list[ScrapeTarget]:
    """The components of this tenant that expose metrics, in a stable order."""
    targets = []
    if t.postgres.enabled:
        targets.append(ScrapeTarget("postgres", POSTGRES_EXPORTER_PORT))
    if t.redis.enabled:
        targets.append(ScrapeTarget("redis", REDIS_EXPORTER_PORT))
    if t.kafka.enabled:
        targets.append(ScrapeTarget("kafka", KAFKA_EXPORTER_PORT))
    if t.consul.enabled:
        targets.append(ScrapeTarget("consul", CONSUL_EXPORTER_PORT))
    # Kong is always on (the tenant's only ingress).
    targets.append(ScrapeTarget("kong", KONG_STATUS_PORT))
    return targets


def metrics_services(t: EffectiveTenant) -> list[Manifest]:
    return [_metrics_service(t, target) for target in scrape_targets(t)]


def _metrics_service(t: EffectiveTenant, target: ScrapeTarget) -> Manifest:
    manifest = service(t, target.service_name, target.component,
                       selector=selector_labels(t, target.component),
                       ports=[service_port(METRICS_PORT_NAME, target.port)])
    manifest["metadata"]["labels"][METRICS_LABEL] = "true"
    return manifest


def _sidecar(name: str, image: str, port: int, environment: list[dict[str, Any]], *,
             command: list[str] | None = None, args: list[str] | None = None
             ) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": image}
    listening = {"tcpSocket": {"port": METRICS_PORT_NAME}, "periodSeconds": 20}
    if command:
        container["command"] = command
    container.update({
        "env": environment,
        "ports": [container_port(METRICS_PORT_NAME, port)],
        "readinessProbe": listening,
        "startupProbe": startup_probe(listening),
        "resources": EXPORTER_RESOURCES,
        "securityContext": container_security_context(read_only_root_filesystem=True),
    })
    if args:
        container["args"] = args
    return container


def postgres_exporter(major: int, config_volume: str, config_dir: str,
                      queries_key: str) -> dict[str, Any]:
    """``config_volume`` (mounted at ``config_dir``) holds POSTGRES_EXPORTER_QUERIES
    at ``queries_key``."""
    # The superuser sees every backend in pg_stat_activity (the connections
    # alert needs them all); the password stays in the Secret, referenced by
    # name, and the exporter reads it from its environment.
    # By default the exporter comes with the PostgreSQL image of the same major,
    # whose entrypoint starts PostgreSQL: the command is named explicitly.
    # `postgres_exporter` is on the PATH of the upstream exporter image too
    # (its entrypoint, /bin/postgres_exporter), so an override to it still works.
    image = image_catalog.current().postgres_exporter_image(major)
    container = _sidecar("postgres-exporter", image, POSTGRES_EXPORTER_PORT, [
        env("DATA_SOURCE_URI", f"localhost:{POSTGRES_PORT}/postgres?sslmode=disable"),
        env("DATA_SOURCE_USER", "postgres"),
        secret_env("DATA_SOURCE_PASS", POSTGRES_SECRET, POSTGRES_SUPERUSER_PASSWORD_KEY),
        env("PG_EXPORTER_EXTEND_QUERY_PATH", f"{config_dir}/{queries_key}"),
    ], command=["postgres_exporter"])
    container["volumeMounts"] = [mount(config_volume, config_dir, read_only=True)]
    return container


def redis_exporter() -> dict[str, Any]:
    # /redis_exporter is the upstream image's entrypoint, and the project's
    # Redis image (which carries the exporter) has it at the same path: named
    # explicitly, since that image's own command starts Redis.
    image = image_catalog.current().redis_exporter
    return _sidecar("redis-exporter", image, REDIS_EXPORTER_PORT, [
        env("REDIS_ADDR", f"redis://localhost:{REDIS_PORT}"),
        secret_env("REDIS_PASSWORD", REDIS_SECRET, REDIS_PASSWORD_KEY),
    ], command=["/redis_exporter"])


def kafka_exporter() -> dict[str, Any]:
    # /bin/kafka_exporter is the community exporter image's entrypoint; the
    # project's Kafka image carries an exporter of its own (a JVM program with the
    # same flags and metric names) there: named explicitly, since that image's
    # own command starts Kafka.
    image = image_catalog.current().kafka_exporter
    container = _sidecar("kafka-exporter", image, KAFKA_EXPORTER_PORT, [],
                         command=["/bin/kafka_exporter"],
                         args=[f"--kafka.server=localhost:{KAFKA_PORT}",
                               f"--web.listen-address=:{KAFKA_EXPORTER_PORT}"])
    container["resources"] = KAFKA_EXPORTER_RESOURCES
    return container


def consul_exporter() -> dict[str, Any]:
    # /bin/consul_exporter is the image's entrypoint, named in case a mirror's
    # image has another. It reads Consul's health, catalog and raft state over
    # localhost (no KV: no --kv.prefix), and is all a scraper reaches.
    image = image_catalog.current().consul_exporter
    return _sidecar("consul-exporter", image, CONSUL_EXPORTER_PORT, [],
                    command=["/bin/consul_exporter"],
                    args=[f"--consul.server=http://localhost:{CONSUL_HTTP_PORT}",
                          f"--web.listen-address=:{CONSUL_EXPORTER_PORT}"])
