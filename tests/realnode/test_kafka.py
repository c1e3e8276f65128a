"""Kafka on the real node, from the project's image through the image catalog: three
KRaft nodes form one quorum, an app produces and consumes through the bootstrap
Service, the exporter beside each node reports a consumer group's lag to a scraper
(and to no other namespace), a change of the node count is refused, by the API
server when the field changes and by the operator when a default would change it,
while the cluster keeps serving, and isolating the tenant closes a session already
open (lifting it, the cluster serves again)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator.builders.common import (
    COMPONENT_LABEL,
    KAFKA_CONTROLLER_PORT,
    KAFKA_PORT,
    OPERATOR_NAMESPACE,
)
from stackforge_operator.builders.exporters import KAFKA_EXPORTER_PORT
from stackforge_operator.builders.kafka import VOTERS_VARIABLE
from stackforge_operator.devcluster.images import KAFKA_VERSION
from stackforge_operator.devcluster.node.services import TESTAPP_IMAGE
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.realnode import pods, stack
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import metadata_of, name_of, spec_of, status_of, uid_of
from tests.support.plugin_cli import plugin

KAFKA_IMAGE = f"localhost/stackforge/kafka:{KAFKA_VERSION}"
NODES = 3
BOOTSTRAP = "kafka:9092"
# A Kafka node not isolated listens within seconds of its container's start (its
# JVM's start-up); one isolated this long and still silent does not listen at all.
LISTENING_WITHIN_SECONDS = 30
CLIENT = "client"
KAFKA_PODS = f"{COMPONENT_LABEL}=kafka"


def kafka_and_an_app(name: str) -> dict[str, Any]:
    """Three Kafka nodes, and the app whose flow to them the client pod stands in for."""
    return tenants.small_tenant(name, components={
        "postgres": {"enabled": False},
        "redis": {"enabled": False},
        "kafka": {"enabled": True, "version": KAFKA_VERSION, "replicas": NODES,
                  "storage": "1Gi",
                  # Half the limit is the heap (images/kafka/stackforge-kafka-start.sh).
                  "resources": {"requests": {"cpu": "50m", "memory": "512Mi"},
                                "limits": {"cpu": "1", "memory": "768Mi"}}},
        "kong": {"replicas": 0},
        "apps": [{"name": "api", "image": TESTAPP_IMAGE, "port": 8080, "replicas": 1}],
    })


def client_pod(namespace: str, tenant: str) -> dict[str, Any]:
    """A pod the tenant's policies treat as its app "api", with Kafka's tools."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": CLIENT, "namespace": namespace,
                     "labels": pods.app_labels(tenant)},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "tools", "image": KAFKA_IMAGE, "imagePullPolicy": "Never",
                "command": ["sleep", "infinity"],
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "10m", "memory": "128Mi"},
                              "limits": {"memory": "512Mi"}},
            }],
        },
    }


@pytest.fixture(scope="module")
def tenant(real_cluster: ClusterHandle, real_operator: OperatorProcess) -> Iterator[str]:
    name = f"kf-{uuid.uuid4().hex[:5]}"
    ns = tenants.namespace_of(name)
    tenants.apply(real_cluster, kafka_and_an_app(name))
    try:
        stack.wait_ready(real_cluster, name, timeout=360)
        pods.apply(real_cluster, client_pod(ns, name))
        pods.wait_ready(real_cluster, ns, CLIENT)
        yield name
    finally:
        tenants.discard(real_cluster, name)


def _tool(cluster: ClusterHandle, namespace: str, *argv: str,
          stdin: str | None = None) -> str:
    result = cluster.kubectl("exec", "-i" if stdin is not None else "-q", "-n", namespace,
                             CLIENT, "--", *argv, input=stdin, timeout=120)
    return result.stdout


def _consume(cluster: ClusterHandle, namespace: str, topic: str, group: str,
             count: int) -> list[str]:
    out = _tool(cluster, namespace, "kafka-console-consumer", "--bootstrap-server", BOOTSTRAP,
                "--topic", topic, "--group", group, "--from-beginning",
                "--max-messages", str(count), "--timeout-ms", "60000")
    return out.split()


def _round_trip(cluster: ClusterHandle, namespace: str, topic: str) -> list[str]:
    """A new topic on every node, one message (the topic's name) produced to it, and
    what a new group reads back."""
    _tool(cluster, namespace, "kafka-topics", "--bootstrap-server", BOOTSTRAP, "--create",
          "--topic", topic, "--replication-factor", str(NODES))
    _tool(cluster, namespace, "kafka-console-producer", "--bootstrap-server", BOOTSTRAP,
          "--topic", topic, stdin=f"{topic}\n")
    return _consume(cluster, namespace, topic, f"{topic}-reader", 1)


def _voters(statefulset: Any) -> str:
    container = next(c for c in statefulset.spec.template.spec.containers if c.name == "kafka")
    voters: str = next(e.value for e in container.env if e.name == VOTERS_VARIABLE)
    return voters


def test_three_nodes_run_the_project_image_and_form_one_quorum(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    core = client.CoreV1Api(real_cluster.api)
    for ordinal in range(NODES):
        status = core.read_namespaced_pod(f"kafka-{ordinal}", ns).status
        assert status is not None and status.container_statuses is not None
        kafka = next(c for c in status.container_statuses if c.name == "kafka")
        assert kafka.container_id is not None
        assert pods.image_containerd_runs(real_cluster, kafka.container_id) == KAFKA_IMAGE
    quorum = _tool(real_cluster, ns, "kafka-metadata-quorum", "--bootstrap-server", BOOTSTRAP,
                   "describe", "--status")
    leader = re.search(r"LeaderId:\s+(\d+)", quorum)
    voters = re.search(r"CurrentVoters:\s+(\[.*\])", quorum)
    assert leader is not None and voters is not None, quorum
    voter_ids = sorted(int(v) for v in re.findall(r'"id":\s*(\d+)', voters.group(1)))
    assert voter_ids == list(range(NODES)), quorum
    assert int(leader.group(1)) in voter_ids


def test_an_app_produces_and_consumes_through_the_bootstrap_service(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    _tool(real_cluster, ns, "kafka-topics", "--bootstrap-server", BOOTSTRAP, "--create",
          "--topic", "orders", "--partitions", "3", "--replication-factor", str(NODES))
    described = _tool(real_cluster, ns, "kafka-topics", "--bootstrap-server", BOOTSTRAP,
                      "--describe", "--topic", "orders")
    # Every partition has a replica on each node, all in sync.
    isr = re.findall(r"Isr:\s+([\d,]+)", described)
    assert len(isr) == 3 and all(sorted(s.split(",")) == ["0", "1", "2"] for s in isr), described
    messages = [f"order-{i}" for i in range(30)]
    _tool(real_cluster, ns, "kafka-console-producer", "--bootstrap-server", BOOTSTRAP,
          "--topic", "orders", "--producer-property", "acks=all",
          stdin="\n".join(messages) + "\n")
    assert sorted(_consume(real_cluster, ns, "orders", "audit", 30)) == sorted(messages)


def test_the_exporter_reports_a_groups_lag_to_a_scraper_namespace_only(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    _tool(real_cluster, ns, "kafka-topics", "--bootstrap-server", BOOTSTRAP, "--create",
          "--if-not-exists", "--topic", "invoices", "--partitions", "1",
          "--replication-factor", str(NODES))
    _tool(real_cluster, ns, "kafka-console-producer", "--bootstrap-server", BOOTSTRAP,
          "--topic", "invoices", stdin="".join(f"invoice-{i}\n" for i in range(10)))
    # The consumer commits what it read when it closes.
    assert len(_consume(real_cluster, ns, "invoices", "billing", 4)) == 4

    pod_ip = status_of(client.CoreV1Api(real_cluster.api).read_namespaced_pod("kafka-1", ns)).pod_ip
    url = f"http://{pod_ip}:{KAFKA_EXPORTER_PORT}/metrics"
    scraped, outsider = pods.scrape_from_a_scraper_and_an_outsider(real_cluster, ns, url)
    samples = dict(line.rsplit(" ", 1) for line in scraped.splitlines()
                   if line and not line.startswith("#"))
    assert samples["kafka_brokers"] == str(NODES), scraped
    assert samples["kafka_exporter_scrape_success"] == "1", scraped
    lag = 'kafka_consumergroup_lag{consumergroup="billing",partition="0",topic="invoices"}'
    assert samples[lag] == "6", scraped
    assert outsider == 1

    # `kubectl stackforge health` reads the same exporter through a port-forward
    # into a broker's pod: the brokers, the topic, the group's lag.
    ran = plugin(real_cluster, "health", tenant, "-o", "json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    rows = [(c["component"], c["check"], c["result"], c["detail"])
            for c in json.loads(ran.stdout)["checks"]]
    assert ("kafka", "pods", "ok", f"{NODES}/{NODES} ready") in rows
    assert ("kafka", "brokers", "ok", f"{NODES}/{NODES} brokers in the cluster") in rows
    [topics] = [detail for component, check, _, detail in rows if check == "topics"]
    assert "invoices" in topics.split(": ", 1)[1].split(", ")
    assert ("kafka", "consumer lag", "ok", "group billing: 6 messages behind") in rows


def _ready_reason(cluster: ClusterHandle, tenant: str) -> tuple[str, str]:
    ready = tenants.condition(tenants.get(cluster, tenant), "Ready") or {}
    return ready.get("reason", ""), ready.get("message", "")


def test_a_node_count_change_is_refused_and_the_cluster_keeps_serving(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    apps = client.AppsV1Api(real_cluster.api)
    core = client.CoreV1Api(real_cluster.api)
    before = apps.read_namespaced_stateful_set("kafka", ns)
    uids = {name_of(p): uid_of(p)
            for p in core.list_namespaced_pod(ns, label_selector=KAFKA_PODS).items}
    assert len(uids) == NODES

    # The field itself: the API server refuses the change.
    refused = real_cluster.kubectl(
        "patch", "stackforgetenant", tenant, "-n", ns, "--type=merge", "-p",
        json.dumps({"spec": {"components": {"kafka": {"replicas": NODES + 1}}}}), check=False)
    assert refused.returncode != 0
    assert "kafka.replicas cannot change on an existing tenant" in refused.stderr

    # Without the field the Starter tier's default (one node) would apply: the
    # operator refuses it, and says so.
    real_cluster.kubectl("patch", "stackforgetenant", tenant, "-n", ns, "--type=json", "-p",
                         json.dumps([{"op": "remove",
                                      "path": "/spec/components/kafka/replicas"}]))
    tenants.eventually(lambda: _ready_reason(real_cluster, tenant)[0] == "KafkaVotersFixed",
                       timeout=60, interval=1)
    _, message = _ready_reason(real_cluster, tenant)
    assert "set spec.components.kafka.replicas to 3" in message, message
    after = apps.read_namespaced_stateful_set("kafka", ns)
    assert after.spec.replicas == NODES and _voters(after) == _voters(before)
    # The running cluster keeps its disruption budget (it followed the refused
    # count, and one node has none: a drain could take two of three voters).
    budget = client.PolicyV1Api(real_cluster.api).read_namespaced_pod_disruption_budget(
        "kafka", ns)
    assert spec_of(budget).max_unavailable == 1
    assert metadata_of(after).generation == metadata_of(before).generation
    # Nothing was restarted, and the cluster serves.
    assert {name_of(p): uid_of(p) for p in core.list_namespaced_pod(
        ns, label_selector=KAFKA_PODS).items} == uids
    assert _round_trip(real_cluster, ns, "after-refusal") == ["after-refusal"]

    # Naming the running count again makes the tenant Ready.
    real_cluster.kubectl("patch", "stackforgetenant", tenant, "-n", ns, "--type=merge", "-p",
                         json.dumps({"spec": {"components": {"kafka": {"replicas": NODES}}}}))
    tenants.wait_condition(real_cluster, tenant, "Ready", "True", timeout=60)


def test_isolation_closes_open_sessions_and_lifting_it_serves_again(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    pods.apply(real_cluster, pods.probe_config_map(ns),
               pods.probe_pod("holder", ns, pods.app_labels(tenant)))
    pods.wait_ready(real_cluster, ns, "holder")
    pod_ip = status_of(client.CoreV1Api(real_cluster.api).read_namespaced_pod("kafka-0", ns)).pod_ip
    target = f"{pod_ip}:9092"
    assert pods.probe_reaches(real_cluster, ns, "holder", target)

    # The operator deletes the Kafka pods made before the isolation (all of them).
    isolated_at = datetime.now(UTC).replace(microsecond=0)
    outcome = pods.held_connection_outcome(
        real_cluster, ns, "holder", target,
        lambda: tenants.set_isolation(real_cluster, tenant, True), seconds=200)
    assert outcome == "closed", outcome
    tenants.wait_condition(real_cluster, tenant, "Isolated", "True", timeout=60)
    # New connections: none. While isolated Kafka serves nobody: its new pods can
    # neither resolve nor reach each other (no DNS, no quorum), and open no
    # listener at all, so even the operator's stand-in, which the policies admit,
    # gets no answer on either port. (Were it to listen, the app's refusal here
    # would need that stand-in as its control; test_flows.py shows the isolation's
    # refusals against listening stand-ins.)
    core = client.CoreV1Api(real_cluster.api)
    seen: list[str] = []
    with pods.operator_stand_in(real_cluster, "kafka-control") as control:
        def serves_nobody() -> bool:
            pod = core.read_namespaced_pod("kafka-0", ns)
            created, status = metadata_of(pod).creation_timestamp, status_of(pod)
            assert created is not None
            if created < isolated_at or not status.pod_ip:
                return False  # not yet the pod made since the isolation
            kafka = next((c for c in status.container_statuses or []
                          if c.name == "kafka"), None)
            state = kafka.state if kafka is not None else None
            running = state.running if state is not None else None
            if running is None or running.started_at is None or (
                    datetime.now(UTC) - running.started_at
                    < timedelta(seconds=LISTENING_WITHIN_SECONDS)):
                return False  # give it the time it takes to listen when not isolated
            targets = [f"{status.pod_ip}:{port}" for port in (KAFKA_PORT,
                                                              KAFKA_CONTROLLER_PORT)]
            reached = {t: pods.probe_reaches(real_cluster, OPERATOR_NAMESPACE, control, t)
                       for t in targets}
            app = pods.probe_reaches(real_cluster, ns, "holder", targets[0])
            seen.append(f"the operator's stand-in reaches {reached}, the app {app}")
            return not app and not any(reached.values())

        try:
            tenants.eventually(serves_nobody, timeout=120, interval=2)
        except AssertionError:
            described = real_cluster.kubectl("get", "pods", "-n", ns, "-o", "wide",
                                             check=False).stdout
            raise AssertionError("\n".join([*seen[-3:], described])) from None

    tenants.set_isolation(real_cluster, tenant, False)
    stack.wait_ready(real_cluster, tenant, timeout=400)
    assert _round_trip(real_cluster, ns, "after-isolation") == ["after-isolation"]
