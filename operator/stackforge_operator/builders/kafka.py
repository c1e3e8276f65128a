"""Kafka in KRaft mode: every pod is both broker and controller (no ZooKeeper).

Node ids are the StatefulSet ordinals (the ``apps.kubernetes.io/pod-index``
label), the controller quorum is every pod of the set, addressed through the
headless Service. KRaft's voter set is static here, so changing the broker
count changes the pod template and rolls the brokers one by one.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from stackforge_operator import image_catalog
from stackforge_operator.builders import exporters
from stackforge_operator.builders.common import (
    KAFKA_CONTROLLER_PORT,
    KAFKA_PORT,
    Manifest,
    container_port,
    container_security_context,
    env,
    field_env,
    labels,
    mount,
    pod_spec,
    pod_template,
    replicas,
    resources,
    selector_labels,
    service,
    service_dns,
    service_port,
    startup_probe,
    stateful_set,
    volume_claim_template,
)
from stackforge_operator.models.effective import EffectiveTenant

COMPONENT = "kafka"
NAME = "kafka"
HEADLESS = "kafka-headless"
# uid/gid of "appuser" in the apache/kafka image.
KAFKA_UID = 1000
DATA_DIR = "/var/lib/kafka/data"
# A subdirectory: Kafka refuses a log dir holding lost+found.
LOG_DIR = f"{DATA_DIR}/logs"
# The static KRaft voter list (reconcile/immutable.py refuses to change it).
VOTERS_VARIABLE = "KAFKA_CONTROLLER_QUORUM_VOTERS"


def image(t: EffectiveTenant) -> str:
    return image_catalog.current().kafka_image(t.kafka.version)


def cluster_id(t: EffectiveTenant) -> str:
    """A stable KRaft cluster id (16 bytes, URL-safe base64) derived from the tenant.

    It must never change for an existing cluster, and builders may not draw
    random numbers: hashing the namespace and name gives both.

    Never one that starts with '-' (one tenant in 64 had one): the storage
    tool's parser took it for an option ("--cluster-id: expected one
    argument") and the brokers crash-looped. Kafka's own random ids avoid a
    leading dash for the same reason. Such a cluster never formatted its
    storage, so hashing again for it changes no cluster that ever ran.
    """
    seed = f"{t.namespace}/{t.name}/kafka"
    while True:
        digest = hashlib.sha256(seed.encode()).digest()[:16]
        found = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        if not found.startswith("-"):
            return found
        seed += "/again"


def pod_host(t: EffectiveTenant, ordinal: int) -> str:
    return f"{NAME}-{ordinal}.{service_dns(t, HEADLESS)}"


def quorum_voters(t: EffectiveTenant) -> str:
    # From the configured count, not replicas(): suspending must not touch the template.
    return ",".join(
        f"{i}@{pod_host(t, i)}:{KAFKA_CONTROLLER_PORT}" for i in range(t.kafka.replicas)
    )


# Clients bootstrap through the Service, then talk to the advertised pod names.
BOOTSTRAP_SERVERS = f"{NAME}:{KAFKA_PORT}"


def build(t: EffectiveTenant) -> list[Manifest]:
    if not t.kafka.enabled:
        return []
    ports = [service_port("kafka", KAFKA_PORT), service_port("controller", KAFKA_CONTROLLER_PORT)]
    return [
        service(
            t,
            HEADLESS,
            COMPONENT,
            selector=selector_labels(t, COMPONENT),
            ports=ports,
            headless=True,
        ),
        service(
            t,
            NAME,
            COMPONENT,
            selector=selector_labels(t, COMPONENT),
            ports=[service_port("kafka", KAFKA_PORT)],
        ),
        _stateful_set(t),
    ]


def _env(t: EffectiveTenant) -> list[dict[str, Any]]:
    n = t.kafka.replicas
    return [
        field_env("POD_NAME", "metadata.name"),
        field_env("KAFKA_NODE_ID", "metadata.labels['apps.kubernetes.io/pod-index']"),
        env("CLUSTER_ID", cluster_id(t)),
        env("KAFKA_PROCESS_ROLES", "broker,controller"),
        env("KAFKA_LISTENERS", f"PLAINTEXT://:{KAFKA_PORT},CONTROLLER://:{KAFKA_CONTROLLER_PORT}"),
        env(
            "KAFKA_ADVERTISED_LISTENERS",
            f"PLAINTEXT://$(POD_NAME).{service_dns(t, HEADLESS)}:{KAFKA_PORT}",
        ),
        env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
        env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
        env("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT"),
        env(VOTERS_VARIABLE, quorum_voters(t)),
        env("KAFKA_LOG_DIRS", LOG_DIR),
        # Replication factors cannot exceed the broker count; min ISR of 2
        # keeps acks=all writes safe once there are three brokers.
        env("KAFKA_DEFAULT_REPLICATION_FACTOR", str(min(3, n))),
        env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", str(min(3, n))),
        env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", str(min(3, n))),
        env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", str(min(2, n))),
        env("KAFKA_MIN_INSYNC_REPLICAS", str(min(2, n))),
    ]


def _stateful_set(t: EffectiveTenant) -> Manifest:
    listening = {"tcpSocket": {"port": "kafka"}, "periodSeconds": 10, "failureThreshold": 6}
    container = {
        "name": "kafka",
        "image": image(t),
        "env": _env(t),
        "ports": [
            container_port("kafka", KAFKA_PORT),
            container_port("controller", KAFKA_CONTROLLER_PORT),
        ],
        "readinessProbe": listening,
        "startupProbe": startup_probe(listening),
        "resources": resources(t.kafka.resources),
        # The image renders server.properties under /opt/kafka at start, so
        # its root filesystem stays writable (restricted does not demand otherwise).
        "securityContext": container_security_context(),
        "volumeMounts": [mount("data", DATA_DIR)],
    }
    spec = pod_spec(containers=[container, exporters.kafka_exporter()], user_id=KAFKA_UID)
    spec["terminationGracePeriodSeconds"] = 60  # a clean shutdown moves leadership first
    return stateful_set(
        t,
        NAME,
        COMPONENT,
        replicas_=replicas(t, t.kafka.replicas),
        service_name=HEADLESS,
        template=pod_template(labels(t, COMPONENT), spec),
        claims=[volume_claim_template("data", t.kafka.storage)],
        parallel=True,
    )
