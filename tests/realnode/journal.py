"""An application that writes all along, for the chaos tests on the real node: a pod
the tenant's policies treat as its app, inserting a journal row every half second
through the tenant's Service as the app's role, each acknowledged row printed. After
a fault, every acknowledged row must be stored: nothing the client was told of is
lost."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from stackforge_operator.builders.postgres import NAME as POSTGRES_SERVICE
from stackforge_operator.builders.secrets_names import (
    POSTGRES_PASSWORD_KEY,
    POSTGRES_SECRET,
    POSTGRES_USER_KEY,
)
from tests.realnode import pods, stack
from tests.support.clusters import ClusterHandle

WRITER = "writer"
WRITER_CONFIG_MAP = "journal-writer"
JOURNAL_SQL = ("CREATE TABLE shop.journal (id bigserial PRIMARY KEY, "
               "at timestamptz NOT NULL)")
# A row of the writer's log: "id|timestamp" (psql -tA).
ACKNOWLEDGED = re.compile(r"^(\d+)\|", re.MULTILINE)


def writer(namespace: str, tenant: str) -> list[dict[str, Any]]:
    """A pod the tenant's policies treat as its app, running journal_writer.sql with
    the app's own credentials, and the ConfigMap that holds the script."""
    script = Path(__file__).with_name("journal_writer.sql").read_text(encoding="utf-8")

    def from_secret(variable: str, key: str) -> dict[str, Any]:
        return {"name": variable, "valueFrom": {"secretKeyRef": {
            "name": POSTGRES_SECRET, "key": key}}}

    return [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": WRITER_CONFIG_MAP, "namespace": namespace},
         "data": {"journal_writer.sql": script}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": WRITER, "namespace": namespace,
                      "labels": pods.app_labels(tenant)},
         "spec": {
             "automountServiceAccountToken": False,
             "terminationGracePeriodSeconds": 0,
             "securityContext": {"runAsNonRoot": True, "runAsUser": 999, "runAsGroup": 999,
                                 "seccompProfile": {"type": "RuntimeDefault"}},
             "containers": [{
                 "name": WRITER, "image": pods.POSTGRES_IMAGE, "imagePullPolicy": "Never",
                 # A lost connection ends psql with an error, and the container's
                 # restart count shows it.
                 "command": ["psql", "-X", "-tA", "-v", "ON_ERROR_STOP=1",
                             "-f", "/writer/journal_writer.sql"],
                 "env": [{"name": "PGHOST", "value": POSTGRES_SERVICE},
                         {"name": "PGDATABASE", "value": stack.DATABASE},
                         from_secret("PGUSER", POSTGRES_USER_KEY),
                         from_secret("PGPASSWORD", POSTGRES_PASSWORD_KEY)],
                 "securityContext": {"allowPrivilegeEscalation": False,
                                     "capabilities": {"drop": ["ALL"]}},
                 "resources": {"requests": {"cpu": "5m", "memory": "16Mi"},
                               "limits": {"memory": "64Mi"}},
                 "volumeMounts": [{"name": "writer", "mountPath": "/writer"}],
             }],
             "volumes": [{"name": "writer", "configMap": {"name": WRITER_CONFIG_MAP}}],
         }},
    ]


def acknowledged(cluster: ClusterHandle, namespace: str) -> set[int]:
    log = cluster.kubectl("logs", "-n", namespace, WRITER).stdout
    return {int(found) for found in ACKNOWLEDGED.findall(log)}
