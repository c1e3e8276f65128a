"""NetworkPolicies: default deny, then exactly the flows the stack needs.

Flows are listed once (source, destination, ports) and rendered twice: as an
ingress rule on the destination and as an egress rule on the source, so the
two sides can never disagree. Outside traffic enters only through Kong.
``isolate`` (security incident) replaces everything with deny-all plus the
operator's own traffic.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from stackforge_operator.builders import exporters
from stackforge_operator.builders.common import (
    APP_COMPONENT,
    APP_LABEL,
    COMPONENT_LABEL,
    CONSUL_HTTP_PORT,
    CONSUL_SERF_LAN_PORT,
    CONSUL_SERVER_PORT,
    DNS_PORT,
    KAFKA_CONTROLLER_PORT,
    KAFKA_PORT,
    KONG_PROXY_PORT,
    KONG_PROXY_TLS_PORT,
    OPERATOR_NAMESPACE,
    POOLER_PORT,
    POSTGRES_PORT,
    REDIS_PORT,
    RUNNER_LABEL,
    TENANT_LABEL,
    Manifest,
    metadata,
)
from stackforge_operator.models.effective import EffectiveTenant

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Peer:
    """One side of a flow: pods of a component in the tenant, or something outside."""

    name: str
    # Pod selector inside the tenant namespace; None for outside peers.
    pod_labels: tuple[tuple[str, str], ...] | None = None
    # NetworkPolicy peer for outside peers.
    outside: tuple[tuple[str, Any], ...] | None = None

    def selector(self) -> dict[str, Any]:
        return {"matchLabels": dict(self.pod_labels or ())}

    def as_peer(self) -> dict[str, Any] | None:
        if self.outside is not None:
            return dict(self.outside)
        return {"podSelector": self.selector()}


@dataclass(frozen=True)
class Flow:
    source: Peer
    destination: Peer
    ports: tuple[tuple[str, int], ...]  # (protocol, port)


def component(t: EffectiveTenant, name: str) -> Peer:
    return Peer(name, pod_labels=((COMPONENT_LABEL, name), (TENANT_LABEL, t.name)))


def _app(t: EffectiveTenant, app_name: str) -> Peer:
    return Peer(
        f"app-{app_name}",
        pod_labels=((APP_LABEL, app_name), (COMPONENT_LABEL, APP_COMPONENT),
                    (TENANT_LABEL, t.name)),
    )


ANYWHERE = Peer("anywhere", outside=())
# Backup runners run in the tenant's own namespace (a BackupPolicy names a tenant
# of its namespace, and its Jobs run there): a pod selector with no namespace
# selector admits them from this namespace only. (Admitting the label from any
# namespace let whoever may create a pod anywhere reach every tenant's database.)
BACKUP_RUNNERS = Peer(
    "backup-runners",
    outside=(("podSelector", {"matchLabels": {RUNNER_LABEL: "backup"}}),),
)

# Prometheus may run anywhere; the namespace it runs in opts in with this label
# (docs/operator.md, "Monitoring"). Only the metrics ports are open to it.
SCRAPER_NAMESPACE_LABEL = "stackforge.io/metrics-scraper"
SCRAPERS = Peer(
    "metrics-scrapers",
    outside=(("namespaceSelector", {"matchLabels": {SCRAPER_NAMESPACE_LABEL: "true"}}),),
)


def _tcp(*ports: int) -> tuple[tuple[str, int], ...]:
    return tuple(("TCP", p) for p in ports)


def flows(t: EffectiveTenant) -> list[Flow]:
    """Every connection the tenant's stack makes, and nothing else."""
    kong = component(t, "kong")
    apps = [(_app(t, a.name), a.port) for a in t.apps]
    result = [Flow(ANYWHERE, kong, _tcp(KONG_PROXY_PORT, KONG_PROXY_TLS_PORT))]
    result += [Flow(kong, app, _tcp(port)) for app, port in apps]

    backends: list[tuple[Peer, tuple[tuple[str, int], ...]]] = []
    if t.postgres.enabled:
        postgres = component(t, "postgres")
        backends.append((postgres, _tcp(POSTGRES_PORT)))
        result.append(Flow(BACKUP_RUNNERS, postgres, _tcp(POSTGRES_PORT)))
        if t.postgres.read_replicas > 0:
            replica = component(t, "postgres-replica")
            result.append(Flow(replica, postgres, _tcp(POSTGRES_PORT)))
            backends.append((replica, _tcp(POSTGRES_PORT)))
        if t.postgres.pooler.enabled:
            pooler = component(t, "pooler")
            result.append(Flow(pooler, postgres, _tcp(POSTGRES_PORT)))
            backends.append((pooler, _tcp(POOLER_PORT)))
    if t.redis.enabled:
        backends.append((component(t, "redis"), _tcp(REDIS_PORT)))
    if t.kafka.enabled:
        kafka = component(t, "kafka")
        backends.append((kafka, _tcp(KAFKA_PORT)))
        result.append(Flow(kafka, kafka, _tcp(KAFKA_PORT, KAFKA_CONTROLLER_PORT)))
    if t.consul.enabled:
        consul = component(t, "consul")
        backends.append((consul, _tcp(CONSUL_HTTP_PORT)))
        result.append(Flow(kong, consul, _tcp(CONSUL_HTTP_PORT)))
        gossip = (*_tcp(CONSUL_SERVER_PORT, CONSUL_SERF_LAN_PORT), ("UDP", CONSUL_SERF_LAN_PORT))
        result.append(Flow(consul, consul, gossip))
    result += [Flow(app, backend, ports) for app, _ in apps for backend, ports in backends]
    result += [Flow(SCRAPERS, component(t, target.component), _tcp(target.port))
               for target in exporters.scrape_targets(t)]
    return result


def _ports(ports: tuple[tuple[str, int], ...]) -> list[dict[str, Any]]:
    return [{"protocol": proto, "port": port} for proto, port in ports]


def _policy(t: EffectiveTenant, name: str, spec: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(t, name, "network"),
        "spec": spec,
    }


def _default_deny(t: EffectiveTenant) -> Manifest:
    return _policy(t, "default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})


def _operator_access(t: EffectiveTenant) -> Manifest:
    operator = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: OPERATOR_NAMESPACE}}}
    return _policy(
        t,
        "allow-operator",
        {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [operator]}],
            "egress": [{"to": [operator]}],
        },
    )


def _dns(t: EffectiveTenant) -> Manifest:
    kube_dns = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    return _policy(
        t,
        "allow-dns",
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [kube_dns], "ports": _ports((("UDP", DNS_PORT), ("TCP", DNS_PORT)))}],
        },
    )


def build(t: EffectiveTenant) -> list[Manifest]:
    policies = [_default_deny(t), _operator_access(t)]
    if t.isolate:
        return policies
    policies.append(_dns(t))

    ingress: dict[Peer, list[dict[str, Any]]] = defaultdict(list)
    egress: dict[Peer, list[dict[str, Any]]] = defaultdict(list)
    for flow in flows(t):
        if flow.destination.pod_labels is not None:
            rule: dict[str, Any] = {"ports": _ports(flow.ports)}
            source = flow.source.as_peer()
            if source:  # an empty peer means "from anywhere": leave `from` out
                rule["from"] = [source]
            ingress[flow.destination].append(rule)
        if flow.source.pod_labels is not None:
            egress[flow.source].append(
                {"to": [flow.destination.as_peer()], "ports": _ports(flow.ports)}
            )

    for peer in sorted(set(ingress) | set(egress), key=lambda p: p.name):
        spec: dict[str, Any] = {"podSelector": peer.selector(), "policyTypes": []}
        if peer in ingress:
            spec["policyTypes"].append("Ingress")
            spec["ingress"] = ingress[peer]
        if peer in egress:
            spec["policyTypes"].append("Egress")
            spec["egress"] = egress[peer]
        policies.append(_policy(t, f"allow-{peer.name}", spec))
    return policies
