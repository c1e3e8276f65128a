"""Secrets the cluster tests put in a namespace: S3 keys and a CA a check accepts."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from kubernetes import client

from tests.support.clusters import ClusterHandle

# Enough for the operator's Secret checks, which look for the PEM marker; tests that
# talk to the S3 server use its real CA.
FAKE_CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
S3_KEYS = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "very-secret"}


def put_secret(cluster: ClusterHandle, namespace: str, name: str,
               data: Mapping[str, str | bytes]) -> None:
    """A Secret in ``namespace``, its values as given (bytes stay bytes, any encoding)."""
    raw = {k: v.encode() if isinstance(v, str) else v for k, v in data.items()}
    client.CoreV1Api(cluster.api).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=name),
        data={k: base64.b64encode(v).decode() for k, v in raw.items()}))
