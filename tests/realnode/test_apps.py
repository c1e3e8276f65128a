"""Tenant apps on the real node: an app image runs and is Ready behind its
readiness probe; an image that runs as root is refused by the kubelet, which the
app's condition says, until the app's ``securityContext`` names a user; the
process then runs as that user and group."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from stackforge_operator.devcluster.node.services import TESTAPP_IMAGE, TESTAPP_ROOT_IMAGE
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.realnode import stack
from tests.support import tenants
from tests.support.clusters import ClusterHandle

APP_PORT = 8080


def _app(name: str, image: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": image, "port": APP_PORT, "healthCheckPath": "/healthz",
            "replicas": 1, "env": {"PORT": str(APP_PORT)}, **fields}


def apps_only(name: str, apps: list[dict[str, Any]]) -> dict[str, Any]:
    return tenants.small_tenant(name, components={
        "postgres": {"enabled": False},
        "redis": {"enabled": False},
        "kong": {"replicas": 0},
        "apps": apps,
    })


@pytest.fixture
def tenant(real_cluster: ClusterHandle, real_operator: OperatorProcess) -> Iterator[str]:
    name = f"ap-{uuid.uuid4().hex[:5]}"
    yield name
    tenants.discard(real_cluster, name)


def _log_of(cluster: ClusterHandle, namespace: str, app: str) -> str:
    return cluster.kubectl("logs", "-n", namespace, f"deployment/{app}").stdout


def test_an_app_runs_and_a_root_image_runs_once_the_app_names_a_user(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    manifest = apps_only(tenant, [_app("api", TESTAPP_IMAGE),
                                  _app("legacy", TESTAPP_ROOT_IMAGE)])
    tenants.apply(real_cluster, manifest)

    # The root image never starts: the kubelet's own reason reaches the condition.
    def refused_with_reason() -> dict[str, Any] | None:
        found = tenants.condition(tenants.get(real_cluster, tenant), "AppsReady")
        return found if found and found["reason"] == "CreateContainerConfigError" else None

    refused = tenants.eventually(refused_with_reason, timeout=180, interval=1)
    assert "legacy" in refused["message"] and "root" in refused["message"], refused
    # The image's own user. (Its group is 0: the kubelet passes the image's uid alone
    # and the runtime finds no group for it in an image with no /etc/group.)
    assert "uid=65532 " in _log_of(real_cluster, ns, "api")

    manifest["spec"]["components"]["apps"][1]["securityContext"] = {
        "runAsUser": 10001, "runAsGroup": 10001}
    tenants.apply(real_cluster, manifest)
    stack.wait_ready(real_cluster, tenant)
    assert "uid=10001 gid=10001" in _log_of(real_cluster, ns, "legacy")
