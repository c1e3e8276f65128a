"""examples/, adjusted to run for real on one local node.

The examples describe a production tenant: Redis, Kafka, Kong, Consul and two
apps beside PostgreSQL, AWS S3 and a Grafana. On the local real node only the
project's own images exist (PostgreSQL, PgBouncer, Redis, Kafka, the operator,
and a small test app standing in for the customer's apps), and the S3 server is a
local one. This module changes exactly what cannot run here and says why, one
note per change, so ``dev`` can print them; the files themselves stay the
production example.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from stackforge_operator.devcluster.images import KAFKA_VERSION
from stackforge_operator.devcluster.node.services import TESTAPP_IMAGE

# What the node has images for: the project's PostgreSQL, Redis and Kafka images.
POSTGRES_MAJOR_ON_NODE = 15
REDIS_VERSION_ON_NODE = "7.0"
KAFKA_VERSION_ON_NODE = KAFKA_VERSION
# A JVM broker in little memory (half of the limit is its heap): one 2-core node.
KAFKA_RESOURCES_ON_NODE = {"requests": {"cpu": "50m", "memory": "512Mi"},
                           "limits": {"cpu": "1", "memory": "768Mi"}}
COMPONENTS_WITHOUT_IMAGE = ("consul",)
DEV_ONLY_LABEL = "stackforge.io/dev-only"
S3_CA_SECRET = "stackforge-dev-s3-ca"  # noqa: S105 - a Secret's name


@dataclass(frozen=True)
class LocalS3:
    endpoint: str
    bucket: str
    region: str = "us-east-1"


def adjust(documents: list[dict[str, Any]], s3: LocalS3) -> tuple[list[dict[str, Any]],
                                                                  list[str]]:
    """The documents as they can run on the node, and a note for each change."""
    notes: list[str] = []
    adjusted = []
    for original in documents:
        document = copy.deepcopy(original)
        kind = document.get("kind")
        where = f"{kind} {document.get('metadata', {}).get('name')}"
        if kind == "StackForgeTenant":
            notes += [f"{where}: {n}" for n in _tenant(document["spec"])]
        elif kind == "BackupPolicy":
            notes += [f"{where}: {n}" for n in _policy(document["spec"], s3)]
        elif kind == "DRDrill":
            notes += [f"{where}: {n}" for n in _drill(document["spec"])]
        adjusted.append(document)
    return adjusted, notes


def _tenant(spec: dict[str, Any]) -> list[str]:
    notes = []
    components = spec.setdefault("components", {})
    for name in COMPONENTS_WITHOUT_IMAGE:
        if components.get(name, {}).get("enabled"):
            components[name]["enabled"] = False
            notes.append(f"{name} off (no {name} image on this node yet)")
    kafka = components.get("kafka", {})
    if kafka.get("enabled"):
        if kafka.get("version") != KAFKA_VERSION_ON_NODE:
            notes.append(f"Kafka {kafka.get('version')} -> {KAFKA_VERSION_ON_NODE} "
                         "(the version the project's image ships)")
            kafka["version"] = KAFKA_VERSION_ON_NODE
        kafka["resources"] = KAFKA_RESOURCES_ON_NODE
        kafka["storage"] = "1Gi"
        notes.append("Kafka: 768Mi and 1Gi of storage per node (one 2-core node)")
    kong = components.setdefault("kong", {})
    if kong.get("replicas") != 0:
        kong["replicas"] = 0
        notes.append("kong at 0 replicas (no Kong image on this node)")
    redis = components.get("redis", {})
    if redis.get("enabled") and redis.get("version") != REDIS_VERSION_ON_NODE:
        notes.append(f"Redis {redis.get('version')} -> {REDIS_VERSION_ON_NODE} "
                     "(the version the project's image ships)")
        redis["version"] = REDIS_VERSION_ON_NODE
    for app in components.get("apps", []):
        app["image"] = TESTAPP_IMAGE
        app.setdefault("env", {})["PORT"] = str(app["port"])
        app.pop("resources", None)
        app.pop("autoscaling", None)
        app["replicas"] = 1
        notes.append(f"app {app['name']}: the test app image, one replica "
                     "(its image is the customer's; one 2-core node)")
    postgres = components.setdefault("postgres", {})
    if postgres.get("version") != POSTGRES_MAJOR_ON_NODE:
        notes.append(f"PostgreSQL {postgres.get('version')} -> {POSTGRES_MAJOR_ON_NODE} "
                     "(the major the project's image ships)")
        postgres["version"] = POSTGRES_MAJOR_ON_NODE
    if postgres.get("readReplicas"):
        postgres["readReplicas"] = 0
        notes.append("no read replica (one 2-core node)")
    if "resources" in postgres:
        del postgres["resources"]
        notes.append("PostgreSQL resources: the tier's defaults (one 2-core node)")
    if spec.pop("notifications", None):
        notes.append("notifications off (no Slack, webhook, SMTP or SMS receiver here)")
    return notes


def _policy(spec: dict[str, Any], s3: LocalS3) -> list[str]:
    storage = spec.setdefault("storage", {})
    storage.update({"endpoint": s3.endpoint, "bucket": s3.bucket, "region": s3.region,
                    "forcePathStyle": True, "endpointCA": {"name": S3_CA_SECRET}})
    notes = [f"storage -> the local S3 server {s3.endpoint}, bucket {s3.bucket}"]
    targets = spec.get("targets", [])
    if "GrafanaDashboards" in targets:
        spec["targets"] = [t for t in targets if t != "GrafanaDashboards"]
        spec.pop("grafana", None)
        notes.append("GrafanaDashboards target off (no Grafana here)")
    return notes


def _drill(spec: dict[str, Any]) -> list[str]:
    if spec.get("once"):
        return []
    spec.pop("schedule", None)
    spec.pop("timeZone", None)
    spec["once"] = True
    return ["runs once now instead of on its monthly schedule"]


def dev_secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    """A Secret only ``dev`` makes, labelled so nobody mistakes it for a real one."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {DEV_ONLY_LABEL: "true"},
                     "annotations": {"stackforge.io/note":
                                     "made by stackforge-operator dev for a local run; "
                                     "not a credential of any real system"}},
        "type": "Opaque",
        "stringData": data,
    }
