from __future__ import annotations

import base64
import hashlib
from typing import Any

from stackforge_operator.builders import kafka
from stackforge_operator.builders.common import KAFKA_CONTROLLER_PORT, KAFKA_PORT
from tests.unit.builders.tenants import container, env_of, find, tenant


def brokers(n: int, **changes: Any) -> dict[str, Any]:
    return {"components": {"kafka": {"enabled": True, "replicas": n}}, **changes}


def test_disabled_kafka_builds_nothing() -> None:
    assert kafka.build(tenant({"components": {"kafka": {"enabled": False}}})) == []


def test_kraft_quorum_from_the_replica_count() -> None:
    objs = kafka.build(tenant(brokers(3)))
    sts = find(objs, "StatefulSet", "kafka")
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == "kafka-headless"
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    env = env_of(container(sts, "kafka"))
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"]["value"] == ",".join(
        f"{i}@kafka-{i}.kafka-headless.tenant-acme.svc:{KAFKA_CONTROLLER_PORT}" for i in range(3)
    )
    assert env["KAFKA_PROCESS_ROLES"]["value"] == "broker,controller"
    # Node id = the pod's ordinal.
    assert env["KAFKA_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert env["KAFKA_ADVERTISED_LISTENERS"]["value"] == (
        f"PLAINTEXT://$(POD_NAME).kafka-headless.tenant-acme.svc:{KAFKA_PORT}"
    )
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]["value"] == "3"
    assert env["KAFKA_LOG_DIRS"]["value"].startswith("/var/lib/kafka/data/")


def test_single_broker_replication_factors() -> None:
    env = env_of(container(find(kafka.build(tenant(brokers(1))), "StatefulSet", "kafka"), "kafka"))
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"]["value"].count("@") == 1
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]["value"] == "1"
    assert env["KAFKA_MIN_INSYNC_REPLICAS"]["value"] == "1"


def test_services() -> None:
    objs = kafka.build(tenant(brokers(3)))
    headless = find(objs, "Service", "kafka-headless")["spec"]
    assert headless["clusterIP"] == "None"
    # Controllers must resolve each other before any of them is Ready.
    assert headless["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["ports"]} == {KAFKA_PORT, KAFKA_CONTROLLER_PORT}
    client = find(objs, "Service", "kafka")["spec"]
    assert [p["port"] for p in client["ports"]] == [KAFKA_PORT]


def test_cluster_id_is_stable_valid_and_per_tenant() -> None:
    a = kafka.cluster_id(tenant(brokers(1)))
    assert a == kafka.cluster_id(tenant(brokers(3)))
    assert len(a) == 22 and "=" not in a
    assert a != kafka.cluster_id(tenant(brokers(1), name="other"))


def _hashed_once(name: str) -> str:
    digest = hashlib.sha256(f"tenant-{name}/{name}/kafka".encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def test_cluster_id_never_starts_with_a_dash_and_others_keep_theirs() -> None:
    # "kf-f3430" (a CI run's tenant) hashed to "-vCi...": kafka-storage read it as
    # an option and every broker crash-looped on "--cluster-id: expected one argument".
    for name in ("kf-f3430", "kf-0006f"):
        assert _hashed_once(name).startswith("-")
        found = kafka.cluster_id(tenant(brokers(1), name=name))
        assert not found.startswith("-")
        assert len(base64.urlsafe_b64decode(found + "==")) == 16
        assert found == kafka.cluster_id(tenant(brokers(3), name=name))
    # Every id a running cluster can have formatted with stays what it was.
    for name in ("acme", "other", "kf-00001"):
        assert kafka.cluster_id(tenant(brokers(1), name=name)) == _hashed_once(name)


def test_suspend_leaves_the_template_alone() -> None:
    running = find(kafka.build(tenant(brokers(3))), "StatefulSet", "kafka")
    suspended = find(kafka.build(tenant(brokers(3, suspend=True))), "StatefulSet", "kafka")
    assert suspended["spec"]["replicas"] == 0
    assert suspended["spec"]["template"] == running["spec"]["template"]


def test_the_exporter_sidecar_names_its_program_and_has_room_for_a_jvm() -> None:
    sts = find(kafka.build(tenant(brokers(3))), "StatefulSet", "kafka")
    exporter = container(sts, "kafka-exporter")
    # The community image's entrypoint path, where the project's image has its own.
    assert exporter["command"] == ["/bin/kafka_exporter"]
    assert exporter["args"] == [f"--kafka.server=localhost:{KAFKA_PORT}",
                                "--web.listen-address=:9308"]
    assert exporter["resources"]["limits"]["memory"] == "256Mi"

