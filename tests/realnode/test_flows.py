"""Every row of the first three tables of docs/network-flows.md (a tenant
namespace, its stack, its backup runners) on the enforcing dataplane (kube-router).

The tenant's policies (builders/network.py) and a BackupPolicy's runner egress
are applied to a namespace of stand-in pods: one per peer of the flow list,
carrying its labels and listening on the ports flows open to it (plus 9999,
which no flow opens). For each row a connection that must succeed, and one
that must be refused: the source's labels from another namespace, a port the
row does not open, or (for egress) a destination it does not name. Every
refusal is controlled: the operator's stand-in (allowed everything) reaches the
same listener. Then the tenant is isolated (only the operator's rows remain),
and released again.

The later tables (a drill's sandbox, the primary archiving or restoring, a dump
restored into a new tenant) are not probed here: the tests of those features
need their allowed rows to work, and tests/cluster/test_drill_sandbox.py checks
the sandbox's policy; their refusals are not probed row by row.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator import flow_table
from stackforge_operator.builders import backup_network, network
from stackforge_operator.builders.common import OPERATOR_NAMESPACE, RUNNER_LABEL
from stackforge_operator.models.backup import BackupPolicySpec
from stackforge_operator.models.effective import EffectiveTenant, resolve
from stackforge_operator.models.tenant import StackForgeTenantSpec
from tests.realnode import pods
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import name_of, status_of

TENANT = "acme"
POLICY = "acme-nightly"
UNLISTED = 9999  # every stand-in listens here; no flow opens it
PAYMENTS_PORT, NOT_PAYMENTS_PORT = 9443, 9998
# The runner's S3 endpoint is a host name on the ACME solver's port: the solver
# admits anyone on it, so only the runner's own egress can keep it from the tenant.
S3_PORT = network.ACME_SOLVER_PORT
OPERATOR_PORT = 8080
BACKUP_POLICY = BackupPolicySpec.model_validate({
    "tenantRef": {"name": TENANT},
    "storage": {"bucket": "flows", "endpoint": f"https://s3.flows.invalid:{S3_PORT}"},
    "retention": {"keepLast": 1}})
# What network.BACKUP_RUNNERS admits (a pod selector of the namespace).
RUNNER_LABELS = ((RUNNER_LABEL, "backup"),)


@dataclass
class StandIn:
    namespace: str
    name: str
    labels: dict[str, str]
    listens: set[str] = field(default_factory=set)
    ip: str = ""


@dataclass(frozen=True)
class Check:
    source: StandIn
    target: str  # ip:port[/udp]
    reached: bool
    why: str


def _target(ip: str, proto: str, port: int) -> str:
    return f"{ip}:{port}" + ("/udp" if proto == "UDP" else "")


def _listen_spec(proto: str, port: int) -> str:
    return f"{port}/udp" if proto == "UDP" else str(port)


class Lab:
    """The namespaces, stand-ins and policies of one test."""

    def __init__(self, cluster: ClusterHandle) -> None:
        self.cluster = cluster
        base = f"fl-{uuid.uuid4().hex[:6]}"
        self.tenant_ns, self.impostor_ns = base, f"{base}-imp"
        self.scraper_ns, self.outside_ns = f"{base}-scr", f"{base}-out"
        self.in_tenant: dict[tuple[tuple[str, str], ...], StandIn] = {}
        self.impostors: dict[tuple[tuple[str, str], ...], StandIn] = {}
        self.twins: dict[tuple[tuple[str, str], ...], StandIn] = {}
        self.outsider = StandIn(self.outside_ns, "outsider", {"role": "outsider"},
                                {str(UNLISTED), str(PAYMENTS_PORT), str(NOT_PAYMENTS_PORT),
                                 str(S3_PORT)})
        self.scraper = StandIn(self.scraper_ns, "prometheus", {"role": "scraper"})
        self.operator = StandIn(OPERATOR_NAMESPACE, f"flow-operator-{base}", {"role": "op"},
                                {str(OPERATOR_PORT)})
        self.coredns_ip = ""
        self.t: EffectiveTenant | None = None

    # ---------------------------------------------------------------- set-up
    def namespaces(self) -> list[str]:
        return [self.tenant_ns, self.impostor_ns, self.scraper_ns, self.outside_ns]

    def create_namespaces(self) -> None:
        core = client.CoreV1Api(self.cluster.api)
        for name in self.namespaces():
            labels = ({network.SCRAPER_NAMESPACE_LABEL: "true"}
                      if name == self.scraper_ns else {})
            core.create_namespace(client.V1Namespace(
                metadata=client.V1ObjectMeta(name=name, labels=labels)))
        tenants.ensure_namespace(self.cluster, OPERATOR_NAMESPACE)
        for name in (*self.namespaces(), OPERATOR_NAMESPACE):
            pods.apply(self.cluster, pods.probe_config_map(name))

    def tenant_model(self, *, isolate: bool = False) -> EffectiveTenant:
        """The example tenant, its app ``api`` allowed out to the outsider's payments port."""
        spec = tenants.example_tenant(TENANT)["spec"]
        spec["components"]["apps"][0]["egress"] = [
            {"cidr": f"{self.outsider.ip}/32", "ports": [{"port": PAYMENTS_PORT}]}]
        spec["isolate"] = isolate
        return resolve(TENANT, StackForgeTenantSpec.model_validate(spec),
                       namespace=self.tenant_ns)

    def runner_egress(self, t: EffectiveTenant) -> dict[str, Any]:
        return backup_network.runner_egress(POLICY, self.tenant_ns, BACKUP_POLICY, t)

    def all_flows(self, t: EffectiveTenant) -> list[network.Flow]:
        return flow_table.tenant_namespace_flows(t, POLICY, BACKUP_POLICY)

    def plan_stand_ins(self, flows: list[network.Flow]) -> None:
        for flow in flows:
            for peer in (flow.source, flow.destination):
                if peer.pod_labels:
                    self.in_tenant.setdefault(peer.pod_labels, StandIn(
                        self.tenant_ns, f"si-{len(self.in_tenant)}", dict(peer.pod_labels),
                        {str(UNLISTED)}))
            if flow.destination.pod_labels:
                self.in_tenant[flow.destination.pod_labels].listens.update(
                    _listen_spec(proto, port) for proto, port in flow.ports)
            if flow.source.pod_labels and flow.source.pod_labels not in self.impostors:
                self.impostors[flow.source.pod_labels] = StandIn(
                    self.impostor_ns, f"imp-{len(self.impostors)}", dict(flow.source.pod_labels))
            if flow.source == flow.destination and flow.source.pod_labels:
                # A pod reaching its own address never leaves it: a twin proves the flow.
                labels = flow.source.pod_labels
                self.twins.setdefault(labels, StandIn(
                    self.tenant_ns, f"{self.in_tenant[labels].name}-twin", dict(labels)))
        self.impostors[RUNNER_LABELS] = StandIn(self.impostor_ns, "imp-runner",
                                                dict(RUNNER_LABELS))

    def stand_ins(self) -> list[StandIn]:
        return [*self.in_tenant.values(), *self.twins.values(), *self.impostors.values(),
                self.outsider,
                self.scraper, self.operator]

    def start(self, stand_ins: list[StandIn]) -> None:
        pods.apply(self.cluster, *(_pod(s) for s in stand_ins))
        core = client.CoreV1Api(self.cluster.api)
        for s in stand_ins:
            pods.wait_ready(self.cluster, s.namespace, s.name, timeout=180)
            ip = status_of(core.read_namespaced_pod(s.name, s.namespace)).pod_ip
            assert ip is not None  # a Ready pod has its address
            s.ip = ip
        dns = core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns")
        coredns_ip = status_of(dns.items[0]).pod_ip
        assert coredns_ip is not None
        self.coredns_ip = coredns_ip

    def apply_policies(self, t: EffectiveTenant) -> None:
        """Exactly ``t``'s policies in the tenant namespace, as the operator prunes them."""
        wanted = [*network.build(t), self.runner_egress(t)]
        for manifest in wanted:
            manifest["metadata"]["namespace"] = self.tenant_ns
        pods.apply(self.cluster, *wanted)
        names = {m["metadata"]["name"] for m in wanted}
        api = client.NetworkingV1Api(self.cluster.api)
        for live in api.list_namespaced_network_policy(self.tenant_ns).items:
            if name_of(live) not in names:
                api.delete_namespaced_network_policy(name_of(live), self.tenant_ns)

    def cleanup(self) -> None:
        core = client.CoreV1Api(self.cluster.api)
        for name in self.namespaces():
            core.delete_namespace(name, propagation_policy="Background")
        for obj in (("pod", self.operator.name), ("configmap", pods.PROBE_CONFIG_MAP)):
            self.cluster.kubectl("delete", "-n", OPERATOR_NAMESPACE, *obj, "--wait=false",
                                 "--ignore-not-found", check=False)

    # ---------------------------------------------------------------- peers
    def source_of(self, flow: network.Flow) -> StandIn:
        if flow.source == flow.destination and flow.source.pod_labels:
            return self.twins[flow.source.pod_labels]
        return self.sources(flow.source)

    def sources(self, peer: network.Peer) -> StandIn:
        if peer.pod_labels:
            return self.in_tenant[peer.pod_labels]
        if peer == network.EVERY_POD:
            return self.postgres()
        # Outside peers hold dicts (unhashable): matched by name.
        return {network.operator_peer().name: self.operator, network.ANYWHERE.name: self.outsider,
                network.SCRAPERS.name: self.scraper,
                network.BACKUP_RUNNERS.name: self.runner()}[peer.name]

    def destination_ip(self, peer: network.Peer) -> str:
        if peer.pod_labels:
            return self.in_tenant[peer.pod_labels].ip
        if peer == network.EVERY_POD:
            return self.postgres().ip
        if peer == network.operator_peer():
            return self.operator.ip
        if peer == network.KUBE_DNS:
            return self.coredns_ip
        # An ipBlock naming the outsider, or other namespaces (the outsider's).
        return self.outsider.ip

    def postgres(self) -> StandIn:
        return next(s for s in self.in_tenant.values()
                    if s.labels.get("app.kubernetes.io/component") == "postgres")

    def runner(self) -> StandIn:
        labels = backup_network.runner_peer(POLICY).pod_labels
        assert labels is not None
        return self.in_tenant[labels]

    def solver(self) -> StandIn:
        labels = network.ACME_SOLVER.pod_labels
        assert labels is not None
        return self.in_tenant[labels]


def _pod(s: StandIn) -> dict[str, Any]:
    return pods.probe_pod(s.name, s.namespace, s.labels, sorted(s.listens))


def _row(flow: network.Flow) -> str:
    return f"{flow.source.name} -> {flow.destination.name} ({flow.why})"


def _ports(flow: network.Flow) -> tuple[tuple[str, int], ...]:
    if flow.ports:
        return flow.ports
    return (("TCP", OPERATOR_PORT if flow.destination == network.operator_peer() else 5432),)


def positives(lab: Lab, flows: list[network.Flow]) -> list[Check]:
    out = []
    for flow in flows:
        if flow.destination in network.PUBLIC_INTERNET:
            continue  # no public address answers on this machine (docs say so)
        source, ip = lab.source_of(flow), lab.destination_ip(flow.destination)
        out += [Check(source, _target(ip, proto, port), True, _row(flow))
                for proto, port in _ports(flow)]
    return out


def negatives(lab: Lab, flows: list[network.Flow]) -> list[Check]:
    out = []
    for flow in flows:
        if flow.destination in network.PUBLIC_INTERNET:
            continue
        row = f"refused: {_row(flow)}"
        proto, port = _ports(flow)[0]
        ip = lab.destination_ip(flow.destination)
        src, dst = flow.source, flow.destination
        if dst.pod_labels is None and dst != network.EVERY_POD:
            # Egress out of the namespace: the same source, a port the row does not open.
            out.append(Check(lab.sources(src), _target(lab.outsider.ip, "TCP", NOT_PAYMENTS_PORT),
                             False, row))
        elif src.pod_labels:
            out.append(Check(lab.impostors[src.pod_labels], _target(ip, proto, port), False, row))
        elif src == network.ANYWHERE:
            out.append(Check(lab.outsider, _target(ip, "TCP", UNLISTED), False, row))
        elif src == network.BACKUP_RUNNERS:
            impostor = lab.impostors[RUNNER_LABELS]
            out.append(Check(impostor, _target(ip, proto, port), False, row))
        elif src in (network.operator_peer(), network.SCRAPERS):
            out.append(Check(lab.outsider, _target(ip, proto, port), False, row))
    # The kube-router case: a host-name endpoint's rule must not reach the tenant's
    # pods, even one that admits anyone on that port.
    out.append(Check(lab.runner(), _target(lab.solver().ip, "TCP", S3_PORT), False,
                     "refused: backup runner -> a tenant pod on the S3 port"))
    out.append(Check(lab.postgres(), _target(lab.coredns_ip, "TCP", 8080), False,
                     "refused: a tenant pod -> cluster DNS on a port that is not DNS"))
    return out


def controls(lab: Lab) -> list[Check]:
    """Every listener a refusal names answers someone: the refusal is the policy's."""
    out = [Check(lab.operator, _target(s.ip, "TCP", int(spec)), True, f"control: {s.name}")
           for s in lab.in_tenant.values() for spec in s.listens if "/" not in spec]
    out.append(Check(lab.scraper, _target(lab.outsider.ip, "TCP", NOT_PAYMENTS_PORT), True,
                     "control: outsider"))
    out.append(Check(lab.outsider, _target(lab.coredns_ip, "TCP", 8080), True,
                     "control: CoreDNS health port"))
    return out


def _probe(lab: Lab, source: StandIn, targets: list[str]) -> dict[str, bool]:
    result = pods.exec_in(lab.cluster, source.namespace, source.name, *pods.PROBE, "connect",
                          *targets)
    found: dict[str, bool] = json.loads(result.stdout)
    return found


def mismatches(lab: Lab, checks: list[Check]) -> list[str]:
    by_source: dict[tuple[str, str], list[Check]] = {}
    for check in checks:
        by_source.setdefault((check.source.namespace, check.source.name), []).append(check)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(
            lambda group: _probe(lab, group[0].source, sorted({c.target for c in group})),
            by_source.values()))
    reached = {(key, target): ok
               for key, answer in zip(by_source, answers, strict=True)
               for target, ok in answer.items()}
    return [f"{c.why}: {c.source.namespace}/{c.source.name} -> {c.target} "
            f"{'refused' if c.reached else 'reached'}"
            for c in checks
            if reached[((c.source.namespace, c.source.name), c.target)] != c.reached]


def until_all_hold(lab: Lab, checks: list[Check], timeout: float = 90) -> None:
    """kube-router applies a policy change within seconds, not at once: retry the
    whole set until every check holds in one round."""
    deadline = time.monotonic() + timeout
    while True:
        wrong = mismatches(lab, checks)
        if not wrong:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(wrong)} of {len(checks)} checks do not hold:\n"
                                 + "\n".join(wrong))
        time.sleep(2)


@pytest.fixture(scope="module")
def lab(real_cluster: ClusterHandle) -> Iterator[Lab]:
    lab = Lab(real_cluster)
    lab.create_namespaces()
    try:
        lab.start([lab.outsider])
        t = lab.tenant_model()
        lab.t = t
        lab.plan_stand_ins(lab.all_flows(t))
        lab.apply_policies(t)
        lab.start([s for s in lab.stand_ins() if s is not lab.outsider])
        yield lab
    finally:
        lab.cleanup()


def test_every_flow_is_allowed_and_its_counterpart_refused(lab: Lab) -> None:
    assert lab.t is not None
    flows = lab.all_flows(lab.t)
    allowed, refused = positives(lab, flows), negatives(lab, flows)
    # Every row but those to public addresses, both ways.
    rows = {_row(f) for f in flows if f.destination not in network.PUBLIC_INTERNET}
    assert {c.why for c in allowed} == rows
    assert {f"refused: {row}" for row in rows} <= {c.why for c in refused}
    until_all_hold(lab, [*controls(lab), *allowed, *refused])


def test_isolation_refuses_every_flow_but_the_operators_and_release_restores_them(
        lab: Lab) -> None:
    assert lab.t is not None
    flows = lab.all_flows(lab.t)
    operator_rows = {_row(flow) for flow in network.operator_flows()}
    lab.apply_policies(lab.tenant_model(isolate=True))
    try:
        during = [Check(c.source, c.target, c.why in operator_rows, c.why)
                  for c in positives(lab, flows)]
        assert any(c.reached for c in during) and any(not c.reached for c in during)
        until_all_hold(lab, during)
    finally:
        lab.apply_policies(lab.t)
    until_all_hold(lab, positives(lab, flows))
