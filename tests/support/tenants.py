"""Tenants in tests: manifests, applying, waiting on conditions, cleaning up."""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stackforge_operator import API_GROUP, API_VERSION
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support.clusters import ClusterHandle
from tests.support.objects import status_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLURAL = "stackforgetenants"


def eventually(check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25) -> Any:
    """Poll until ``check`` returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")


def namespace_of(name: str) -> str:
    """Where the tests put tenant ``name``: a namespace of its own, as the example does."""
    return f"tenant-{name}"


def example_tenant(name: str = "acme") -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / "tenant-acme.yaml").read_text())
    loaded["metadata"]["name"] = name
    loaded["metadata"]["namespace"] = namespace_of(name)
    return loaded


def small_tenant(name: str, *, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    """A Starter tenant with one app: quick to converge, easy to reason about.

    In ``namespace``, by default its own (:func:`namespace_of`)."""
    body: dict[str, Any] = {
        "tier": "Starter",
        "components": {
            "apps": [{"name": "api", "image": "registry.example.com/shop/api:1.0.0",
                      "port": 8080}],
        },
    }
    body.update(copy.deepcopy(spec))
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "StackForgeTenant",
        "metadata": {"name": name, "namespace": namespace or namespace_of(name)},
        "spec": body,
    }


def ensure_namespace(cluster: ClusterHandle, name: str) -> None:
    try:
        client.CoreV1Api(cluster.api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as error:
        if error.status != 409:
            raise


def apply(cluster: ClusterHandle, manifest: dict[str, Any]) -> None:
    """Apply a tenant, making its namespace first as a user would."""
    if manifest["kind"] == "StackForgeTenant":
        ensure_namespace(cluster, manifest["metadata"]["namespace"])
    cluster.kubectl("apply", "--server-side", "--field-manager=tests", "--force-conflicts",
                    "-f", "-", input=json.dumps(manifest))


def get(cluster: ClusterHandle, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    try:
        found = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace or namespace_of(name), PLURAL, name)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    assert isinstance(found, dict)  # the client types a custom object as a bare object
    return found


def condition(tenant: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for found in ((tenant or {}).get("status") or {}).get("conditions") or []:
        if found["type"] == type_:
            return dict(found)
    return None


def wait_condition(
    cluster: ClusterHandle, name: str, type_: str, status: str = "True", timeout: float = 120.0,
    namespace: str | None = None,
) -> dict[str, Any]:
    def matches() -> dict[str, Any] | None:
        tenant = get(cluster, name, namespace)
        found = condition(tenant, type_)
        if found and found["status"] == status and (tenant or {}).get("status", {}).get(
                "observedGeneration") == tenant["metadata"]["generation"]:  # type: ignore[index]
            return tenant
        return None

    result: dict[str, Any] = eventually(matches, timeout=timeout, interval=0.5)
    return result


def put_secret(cluster: ClusterHandle, namespace: str, name: str, data: dict[str, str]) -> None:
    core = client.CoreV1Api(cluster.api)
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name),
        data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    )
    try:
        core.create_namespaced_secret(namespace, body)
    except ApiException as error:
        if error.status != 409:
            raise
        core.replace_namespaced_secret(name, namespace, body)


def example_alert_secret(cluster: ClusterHandle, namespace: str) -> None:
    """The Secret the example tenant's notification channels name."""
    put_secret(cluster, namespace, "acme-alerts", {
        "slack-webhook-url": "http://127.0.0.1:9/slack",
        "pagerduty-url": "http://127.0.0.1:9/pagerduty",
        "smtp-username": "acme-alerts", "smtp-password": "not-a-real-password",
        "sms-url": "http://127.0.0.1:9/sms", "sms-authorization": "Basic bm90OnJlYWw=",
    })


def namespace_exists(cluster: ClusterHandle, name: str) -> bool:
    try:
        client.CoreV1Api(cluster.api).read_namespace(name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def delete(
    cluster: ClusterHandle, name: str, *, namespace: str | None = None, wait: bool = True
) -> None:
    """Delete the tenant alone: its children go by GC, its namespace stays."""
    objects = client.CustomObjectsApi(cluster.api)
    try:
        objects.delete_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace or namespace_of(name), PLURAL, name,
            propagation_policy="Foreground")
    except ApiException as error:
        if error.status != 404:
            raise
    if wait:
        eventually(lambda: get(cluster, name, namespace) is None, timeout=120)


def discard(cluster: ClusterHandle, name: str, namespace: str | None = None) -> None:
    """Clean up after a test: delete the tenant's namespace, with everything in it
    (not waiting; test names are unique)."""
    try:
        client.CoreV1Api(cluster.api).delete_namespace(
            namespace or namespace_of(name), propagation_policy="Background")
    except ApiException as error:
        if error.status != 404:
            raise


def wait_for_no_terminating_namespace(cluster: ClusterHandle, timeout: float = 180.0) -> None:
    """Wait out earlier tests' namespace deletions: while a namespace terminates,
    controllers keep writing in it (e.g. re-creating kube-root-ca.crt), which a
    test counting write requests would see."""
    core = client.CoreV1Api(cluster.api)
    eventually(lambda: not [n for n in core.list_namespace().items
                            if status_of(n).phase == "Terminating"], timeout=timeout, interval=1)


def certificate_pem(days: int) -> tuple[str, str]:
    """A self-signed certificate for shop.example.com expiring in ``days`` days, and its key."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days, hours=12))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def set_isolation(cluster: ClusterHandle, name: str, isolate: bool) -> None:
    """Turn the tenant's ``spec.isolate`` on or off, as a person would with kubectl."""
    cluster.kubectl("patch", "stackforgetenant", name, "-n", namespace_of(name),
                    "--type=merge", "-p", json.dumps({"spec": {"isolate": isolate}}))


def looks_at(operator: OperatorProcess, key: str) -> int:
    """How often the tenant's queue ran its key (a reconcile or a skipped resync):
    the work queue logs each run (--verbose)."""
    return operator.process.log_path.read_text().count(f"reconciled {key} in ")


def remove_namesakes(cluster: ClusterHandle, *names: str, timeout: float = 60.0) -> None:
    """Delete every tenant of these names, wherever it is, and wait until none is left.

    Tenant names are unique across the cluster: a test that makes a tenant of a
    name an earlier test used (its namespace still being torn down) gets one that
    may not run (TenantNameTaken), and nothing backs it up or drills it. Tenants
    carry no finalizer, so they go at once."""
    api = client.CustomObjectsApi(cluster.api)
    deadline = time.monotonic() + timeout
    while True:
        listed: Any = api.list_cluster_custom_object(API_GROUP, API_VERSION, "stackforgetenants")
        found = [item["metadata"] for item in listed["items"]
                 if item["metadata"]["name"] in names]
        if not found:
            return
        assert time.monotonic() < deadline, f"tenants not gone: {found}"
        for meta in found:
            try:
                api.delete_namespaced_custom_object(API_GROUP, API_VERSION, meta["namespace"],
                                                    "stackforgetenants", meta["name"])
            except ApiException as error:
                if error.status != 404:
                    raise
        time.sleep(0.2)
