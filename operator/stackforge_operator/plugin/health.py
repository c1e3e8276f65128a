"""``kubectl stackforge health``: the runbook's health checks, run now against
the tenant's live pods. Commands run in the component's own container (as the
runbook's ``docker exec`` did); HTTP checks reach the pod's own port through a
port-forward. Verdicts and the table: health_checks.py."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from kubernetes.client.exceptions import ApiException

from stackforge_operator.builders import consul, kafka, kong, postgres, redis
from stackforge_operator.builders.common import (
    APP_COMPONENT,
    APP_LABEL,
    COMPONENT_LABEL,
    CONSUL_HTTP_PORT,
    KONG_STATUS_PORT,
    POSTGRES_PORT,
    TENANT_LABEL,
)
from stackforge_operator.builders.exporters import KAFKA_EXPORTER_PORT
from stackforge_operator.models.effective import EffectiveTenant, resolve
from stackforge_operator.models.tenant import StackForgeTenantSpec
from stackforge_operator.plugin import health_checks as verdict
from stackforge_operator.plugin.api import Cluster, ProbeError
from stackforge_operator.plugin.health_checks import Check

# The container's own socket directory: no password, no network policy involved.
SOCKET_DIR = "/var/run/postgresql"
CONNECTIONS_SQL = ("select count(*) filter (where backend_type = 'client backend'), "
                   "current_setting('max_connections') from pg_stat_activity")
COMMAND_TIMEOUT_SECONDS = 15


def effective(tenant: dict[str, Any]) -> EffectiveTenant:
    meta = tenant["metadata"]
    spec = StackForgeTenantSpec.model_validate(tenant.get("spec") or {})
    return resolve(meta["name"], spec, namespace=meta["namespace"])


def _guarded(component: str, check: str, target: str,
             probe: Callable[[], list[Check]]) -> list[Check]:
    """The probe's rows, or one failed row saying why it could not run."""
    try:
        return probe()
    except ProbeError as error:
        return [verdict.failed(component, check, target, str(error))]
    except ApiException as error:
        return [verdict.failed(component, check, target,
                               f"the API server answered {error.status} {error.reason}")]
    except OSError as error:
        return [verdict.failed(component, check, target, f"no connection: {error}")]


class _Tenant:
    """One tenant's pods, component by component."""

    def __init__(self, cluster: Cluster, t: EffectiveTenant) -> None:
        self.cluster, self.t = cluster, t

    def component(self, label: str, selector: str,
                  expected: bool = True) -> tuple[list[Check], list[str]]:
        """The pods row of a component and its running pods. Not deployed: a failed
        row when the tenant's spec has it (``expected``; a tenant stalled before its
        workloads were made, one deleted by hand), else none."""
        wanted = self.cluster.wanted_replicas(self.t.namespace, selector)
        if wanted is None:
            if expected:
                return [verdict.failed(label, "pods", "-",
                                       "not deployed: its spec has it, the cluster has no "
                                       "workload of it (the tenant's status says why)")], []
            return [], []
        pods = self.cluster.pods(self.t.namespace, selector)
        running = sorted(str(p["metadata"]["name"]) for p in pods
                         if (p.get("status") or {}).get("phase") == "Running")
        ready, not_ready = verdict.ready_and_not(pods)
        return [verdict.pods_check(label, wanted, ready, not_ready)], running

    def selector(self, component: str, app: str | None = None) -> str:
        found = f"{TENANT_LABEL}={self.t.name},{COMPONENT_LABEL}={component}"
        return found + (f",{APP_LABEL}={app}" if app else "")

    def run(self, pod: str, container: str, command: list[str]) -> tuple[int, str, str]:
        return self.cluster.exec(self.t.namespace, pod, container, command,
                                 timeout=COMMAND_TIMEOUT_SECONDS)

    def get(self, pod: str, port: int, path: str) -> tuple[int, str]:
        return self.cluster.http_get(self.t.namespace, pod, port, path)


def _pg_ready(at: _Tenant, component: str, pod: str) -> list[Check]:
    return [verdict.command_check(component, "ready", pod, *at.run(pod, "postgres", [
        "pg_isready", "-h", SOCKET_DIR, "-p", str(POSTGRES_PORT)]))]


def _pg_connections(at: _Tenant, pod: str) -> list[Check]:
    return [verdict.connections(pod, *at.run(pod, "postgres", [
        "psql", "-U", "postgres", "-h", SOCKET_DIR, "-d", "postgres", "-XAt",
        "-c", CONNECTIONS_SQL]))]


def _postgres(at: _Tenant) -> list[Check]:
    out: list[Check] = []
    pg = at.t.postgres
    for component, expected in ((postgres.COMPONENT, pg.enabled),
                                (postgres.REPLICA_COMPONENT, pg.enabled and pg.read_replicas > 0)):
        rows, running = at.component(component, at.selector(component), expected)
        out += rows
        for pod in running:
            out += _guarded(component, "ready", pod, partial(_pg_ready, at, component, pod))
        if component == postgres.COMPONENT and running:
            out += _guarded(component, "connections", running[0],
                            partial(_pg_connections, at, running[0]))
    return out


def _redis_ping(at: _Tenant, pod: str) -> list[Check]:
    # REDISCLI_AUTH is in the container's environment (builders/redis.py).
    return [verdict.redis_ping(pod, *at.run(pod, "redis", ["redis-cli", "ping"]))]


def _redis(at: _Tenant) -> list[Check]:
    rows, running = at.component(redis.COMPONENT, at.selector(redis.COMPONENT),
                                 at.t.redis.enabled)
    for pod in running:
        rows += _guarded("redis", "ping", pod, partial(_redis_ping, at, pod))
    return rows


def _body(answer: tuple[int, str]) -> str:
    status, body = answer
    if status != 200:
        raise ProbeError(f"HTTP {status}: {body.strip()[:80]}")
    return body


def _kafka_cluster(at: _Tenant, pod: str) -> list[Check]:
    metrics = _body(at.get(pod, KAFKA_EXPORTER_PORT, "/metrics"))
    return verdict.kafka(pod, metrics, at.t.kafka.replicas)


def _kafka(at: _Tenant) -> list[Check]:
    rows, running = at.component(kafka.COMPONENT, at.selector(kafka.COMPONENT),
                                 at.t.kafka.enabled)
    if running:
        # The exporter sidecar asks the cluster at every scrape; a Kafka tool's JVM
        # started in the broker's container could push it past its memory limit.
        rows += _guarded("kafka", "cluster", running[0], partial(_kafka_cluster, at, running[0]))
    return rows


def _consul_status(at: _Tenant, pod: str) -> list[Check]:
    return verdict.consul(pod, at.get(pod, CONSUL_HTTP_PORT, "/v1/status/leader"),
                          at.get(pod, CONSUL_HTTP_PORT, "/v1/status/peers"),
                          at.t.consul.replicas)


def _consul(at: _Tenant) -> list[Check]:
    rows, running = at.component(consul.COMPONENT, at.selector(consul.COMPONENT),
                                 at.t.consul.enabled)
    for pod in running:
        rows += _guarded("consul", "leader", pod, partial(_consul_status, at, pod))
    return rows


def _http(at: _Tenant, component: str, pod: str, port: int, path: str) -> list[Check]:
    return [verdict.http_check(component, f"GET {path}", pod, *at.get(pod, port, path))]


def _kong(at: _Tenant) -> list[Check]:
    rows, running = at.component(kong.COMPONENT, at.selector(kong.COMPONENT),
                                 at.t.kong.replicas > 0)
    for pod in running:
        rows += _guarded("kong", "GET /status", pod,
                         partial(_http, at, "kong", pod, KONG_STATUS_PORT, "/status"))
    return rows


def _apps(at: _Tenant) -> list[Check]:
    out: list[Check] = []
    for app in at.t.apps:
        label = f"app/{app.name}"
        rows, running = at.component(label, at.selector(APP_COMPONENT, app.name))
        out += rows
        if app.health_check_path is None:
            continue  # its readiness probe is a TCP connect: the pods row says it
        for pod in running:
            out += _guarded(label, f"GET {app.health_check_path}", pod,
                            partial(_http, at, label, pod, app.port, app.health_check_path))
    return out


def run(cluster: Cluster, tenant: dict[str, Any]) -> list[Check]:
    """Every check of the tenant's deployed components, in the runbook's order."""
    at = _Tenant(cluster, effective(tenant))
    return [*_postgres(at), *_redis(at), *_kafka(at), *_consul(at), *_kong(at), *_apps(at)]
