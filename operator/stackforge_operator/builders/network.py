"""NetworkPolicies: default deny, then exactly the flows the stack needs.

Flows are listed once (source, destination, ports) and rendered twice: as an
ingress rule on the destination and as an egress rule on the source, so the
two sides can never disagree. Outside traffic enters only through Kong.
``isolate`` (security incident) replaces everything with deny-all plus the
operator's own traffic.
"""

from __future__ import annotations

import ipaddress
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
    POOLER_PORT,
    POSTGRES_PORT,
    REDIS_PORT,
    RUNNER_LABEL,
    TENANT_LABEL,
    Manifest,
    metadata,
    operator_namespace,
)
from stackforge_operator.models.effective import App, EffectiveTenant

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Peer:
    """One side of a flow: pods of a component in the tenant, or something outside."""

    name: str
    # Pod selector inside the tenant namespace (empty: every pod); None for outside peers.
    pod_labels: tuple[tuple[str, str], ...] | None = None
    # NetworkPolicy peer for outside peers (empty: anywhere).
    outside: tuple[tuple[str, Any], ...] | None = None

    def selector(self) -> dict[str, Any]:
        return {"matchLabels": dict(self.pod_labels)} if self.pod_labels else {}

    def as_peer(self) -> dict[str, Any] | None:
        if self.outside is not None:
            return dict(self.outside)
        return {"podSelector": self.selector()}


@dataclass(frozen=True)
class Flow:
    source: Peer
    destination: Peer
    ports: tuple[tuple[str, int], ...]  # (protocol, port); empty: every port
    why: str


def component(t: EffectiveTenant, name: str) -> Peer:
    return Peer(name, pod_labels=((COMPONENT_LABEL, name), (TENANT_LABEL, t.name)))


def app_peer(t: EffectiveTenant, app_name: str) -> Peer:
    return Peer(
        f"app-{app_name}",
        pod_labels=((APP_LABEL, app_name), (COMPONENT_LABEL, APP_COMPONENT),
                    (TENANT_LABEL, t.name)),
    )


ANYWHERE = Peer("anywhere", outside=())
EVERY_POD = Peer("every-pod", pod_labels=())


def operator_peer() -> Peer:
    """The operator's pods, in whichever namespace it was installed into."""
    return Peer(
        "operator",
        outside=(("namespaceSelector",
                  {"matchLabels": {NAMESPACE_NAME_LABEL: operator_namespace()}}),),
    )


KUBE_DNS = Peer(
    "kube-dns",
    outside=(("namespaceSelector", {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}}),
             ("podSelector", {"matchLabels": {"k8s-app": "kube-dns"}})),
)
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

# cert-manager answers an HTTP-01 challenge from a solver pod it starts in the
# certificate's namespace; the ACME server reaches it through the cluster's
# ingress controller, wherever that runs. The pod serves only the token.
ACME_SOLVER_LABEL = "acme.cert-manager.io/http01-solver"
ACME_SOLVER_PORT = 8089
ACME_SOLVER = Peer("acme-solver", pod_labels=((ACME_SOLVER_LABEL, "true"),))


# Where pod, service and node networks live: private, shared (carrier-grade
# NAT) and link-local ranges. Dataplanes that match ipBlocks against pod
# addresses too (kube-router does) would otherwise let "every address" include
# the cluster's pods; a peer in the cluster is named by its namespace instead.
NON_PUBLIC_NETWORKS = {
    "0.0.0.0/0": ["10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12",
                  "192.168.0.0/16"],
    "::/0": ["fc00::/7", "fe80::/10"],
}
PUBLIC_INTERNET = tuple(
    Peer(f"public-ipv{4 if everything.startswith('0') else 6}",
         outside=(("ipBlock", {"cidr": everything, "except": excluded}),))
    for everything, excluded in NON_PUBLIC_NETWORKS.items()
)


def is_public(ip: str) -> bool:
    """Whether PUBLIC_INTERNET covers the address."""
    parsed = ipaddress.ip_address(ip)
    return not any(parsed in ipaddress.ip_network(excluded)
                   for ranges in NON_PUBLIC_NETWORKS.values() for excluded in ranges)


def address(ip: str) -> Peer:
    """Exactly one address (an IP literal)."""
    parsed = ipaddress.ip_address(ip)
    return Peer(str(parsed),
                outside=(("ipBlock", {"cidr": f"{parsed}/{parsed.max_prefixlen}"}),))


def other_namespaces(*excluded: str) -> Peer:
    """Pods of every namespace but these (an S3 server or Grafana in the cluster)."""
    return Peer(
        "other-namespaces",
        outside=(("namespaceSelector", {"matchExpressions": [{
            "key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": list(excluded)}]}),),
    )


def tcp(*ports: int) -> tuple[tuple[str, int], ...]:
    return tuple(("TCP", p) for p in ports)


DNS_PORTS = (("UDP", DNS_PORT), ("TCP", DNS_PORT))


def operator_flows() -> list[Flow]:
    """The operator's own access, kept while the tenant is isolated. One way: the
    enforcers track connections, so the answers go back without a rule, and no
    tenant pod starts one to the operator. The other way was open too, on every
    port: any tenant pod, an isolated one included, read the operator's metrics
    (every tenant's name, backups and drill verdicts)."""
    return [
        Flow(operator_peer(), EVERY_POD, (), "the operator reads the exporters (replication lag) "
             "and checks the stack"),
    ]


def dns_flow() -> Flow:
    return Flow(EVERY_POD, KUBE_DNS, DNS_PORTS, "Service names (cluster DNS)")


def _issues_certificates(t: EffectiveTenant) -> bool:
    return t.domain is not None and t.tls is not None and t.tls.issuer_ref is not None


def _app_egress(app: App, source: Peer) -> list[Flow]:
    result = []
    for index, rule in enumerate(app.egress):
        block: dict[str, Any] = {"cidr": rule.cidr}
        if rule.except_:
            block["except"] = list(rule.except_)
        destination = Peer(f"{source.name}-egress-{index}", outside=(("ipBlock", block),))
        ports = tuple((p.protocol, p.port) for p in rule.ports)
        result.append(Flow(source, destination, ports,
                           f"spec.components.apps[{app.name}].egress[{index}]"))
    return result


def flows(t: EffectiveTenant) -> list[Flow]:
    """Every connection the tenant's stack makes, and nothing else."""
    kong = component(t, "kong")
    apps = [(app, app_peer(t, app.name)) for app in t.apps]
    result = [Flow(ANYWHERE, kong, tcp(KONG_PROXY_PORT, KONG_PROXY_TLS_PORT),
                   "outside traffic enters through Kong only")]
    result += [Flow(kong, peer, tcp(app.port), "Kong routes to the app")
               for app, peer in apps]
    if _issues_certificates(t):
        result.append(Flow(ANYWHERE, ACME_SOLVER, tcp(ACME_SOLVER_PORT),
                           "cert-manager's HTTP-01 challenge, through the ingress controller"))

    backends: list[tuple[Peer, tuple[tuple[str, int], ...]]] = []
    if t.postgres.enabled:
        postgres = component(t, "postgres")
        backends.append((postgres, tcp(POSTGRES_PORT)))
        result.append(Flow(BACKUP_RUNNERS, postgres, tcp(POSTGRES_PORT),
                           "backup runners of this namespace dump the database"))
        if t.postgres.read_replicas > 0:
            replica = component(t, "postgres-replica")
            result.append(Flow(replica, postgres, tcp(POSTGRES_PORT),
                               "replicas stream WAL and are cloned from the primary"))
            backends.append((replica, tcp(POSTGRES_PORT)))
        if t.postgres.pooler.enabled:
            pooler = component(t, "pooler")
            result.append(Flow(pooler, postgres, tcp(POSTGRES_PORT),
                               "PgBouncer's server connections"))
            backends.append((pooler, tcp(POOLER_PORT)))
    if t.redis.enabled:
        backends.append((component(t, "redis"), tcp(REDIS_PORT)))
    if t.kafka.enabled:
        kafka = component(t, "kafka")
        backends.append((kafka, tcp(KAFKA_PORT)))
        result.append(Flow(kafka, kafka, tcp(KAFKA_PORT, KAFKA_CONTROLLER_PORT),
                           "Kafka replication and its KRaft controller quorum"))
    if t.consul.enabled:
        consul = component(t, "consul")
        backends.append((consul, tcp(CONSUL_HTTP_PORT)))
        result.append(Flow(kong, consul, tcp(CONSUL_HTTP_PORT),
                           "Kong resolves services in Consul's catalog"))
        gossip = (*tcp(CONSUL_SERVER_PORT, CONSUL_SERF_LAN_PORT), ("UDP", CONSUL_SERF_LAN_PORT))
        result.append(Flow(consul, consul, gossip, "Consul's Raft and gossip"))
        result += [Flow(consul, peer, tcp(app.port), "Consul's health check of the app")
                   for app, peer in apps]
    result += [Flow(peer, backend, ports, "the app uses the stack")
               for _, peer in apps for backend, ports in backends]
    result += [flow for app, peer in apps for flow in _app_egress(app, peer)]
    result += [Flow(SCRAPERS, component(t, target.component), tcp(target.port),
                    "Prometheus scrapes the exporter")
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


def ingress_rule(flow: Flow) -> dict[str, Any]:
    return _rule(flow, "from", flow.source)


def egress_rule(flow: Flow) -> dict[str, Any]:
    return _rule(flow, "to", flow.destination)


def _rule(flow: Flow, direction: str, peer: Peer) -> dict[str, Any]:
    """One ingress (``from``) or egress (``to``) rule of a flow; an empty peer or
    an empty port list means "any", which NetworkPolicy writes as a left-out key."""
    rule: dict[str, Any] = {}
    selected = peer.as_peer()
    if selected:
        rule[direction] = [selected]
    if flow.ports:
        rule["ports"] = _ports(flow.ports)
    return rule


def rules_by_pod(flow_list: list[Flow]) -> dict[Peer, dict[str, list[dict[str, Any]]]]:
    """Each flow as an ingress rule on its destination and an egress rule on its
    source, for those that are pods of the namespace; grouped by those pods."""
    by_pod: dict[Peer, dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: {"Ingress": [], "Egress": []})
    for flow in flow_list:
        if flow.destination.pod_labels is not None:
            by_pod[flow.destination]["Ingress"].append(ingress_rule(flow))
        if flow.source.pod_labels is not None:
            by_pod[flow.source]["Egress"].append(egress_rule(flow))
    return by_pod


def policy_spec(peer: Peer, rules: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": peer.selector(), "policyTypes": []}
    for kind in ("Ingress", "Egress"):
        if rules[kind]:
            spec["policyTypes"].append(kind)
            spec[kind.lower()] = rules[kind]
    return spec


def single_policy_spec(flow_list: list[Flow]) -> dict[str, Any]:
    """The spec of one policy for flows that all concern the same pods."""
    ((peer, rules),) = rules_by_pod(flow_list).items()
    return policy_spec(peer, rules)


def _one_policy(t: EffectiveTenant, name: str, flow_list: list[Flow]) -> Manifest:
    return _policy(t, name, single_policy_spec(flow_list))


def build(t: EffectiveTenant) -> list[Manifest]:
    policies = [_default_deny(t), _one_policy(t, "allow-operator", operator_flows())]
    if t.isolate:
        return policies
    policies.append(_one_policy(t, "allow-dns", [dns_flow()]))
    by_pod = rules_by_pod(flows(t))
    for peer in sorted(by_pod, key=lambda p: p.name):
        policies.append(_policy(t, f"allow-{peer.name}", policy_spec(peer, by_pod[peer])))
    return policies
