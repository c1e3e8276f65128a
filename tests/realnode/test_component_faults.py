"""A component whose pods cannot run says why, in the pod's own words, and the tenant
is Stalled until the spec is fixed: an image that does not exist, a database given
too little memory. On the real node: only a kubelet produces these states."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.realnode import stack
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.tenants import eventually

# The pod's state reaches the tenant's status within a minute (the bound); the
# operator looks again every few seconds while a component is not ready.
WITHIN = 60


@pytest.fixture
def name(real_cluster: ClusterHandle, real_operator: OperatorProcess) -> Iterator[str]:
    made = f"ft-{uuid.uuid4().hex[:5]}"
    yield made
    tenants.discard(real_cluster, made)


def _condition(cluster: ClusterHandle, name: str, type_: str) -> dict[str, Any]:
    return tenants.condition(tenants.get(cluster, name) or {}, type_) or {}


def _wait_reason(cluster: ClusterHandle, name: str, type_: str, reason: str) -> dict[str, Any]:
    started = time.monotonic()
    found: dict[str, Any] = eventually(
        lambda: (c := _condition(cluster, name, type_)).get("reason") == reason and c,
        timeout=WITHIN + 60)
    # Seen within the bound (the extra minute above only makes a miss readable).
    assert time.monotonic() - started <= WITHIN + 5, found
    return found


def test_an_image_that_does_not_exist_stalls_the_tenant_until_the_spec_is_fixed(
        real_cluster: ClusterHandle, name: str) -> None:
    manifest = stack.postgres_only(name)
    manifest["spec"]["components"]["apps"] = [
        {"name": "api", "image": "localhost/stackforge/no-such-image:1", "port": 8080}]
    tenants.apply(real_cluster, manifest)
    apps = _wait_reason(real_cluster, name, "AppsReady", "ImagePullBackOff")
    assert apps["status"] == "False"
    assert "api-" in apps["message"] and "no-such-image" in apps["message"]
    stalled = _wait_reason(real_cluster, name, "Stalled", "ImagePullBackOff")
    assert stalled["status"] == "True" and "no-such-image" in stalled["message"]

    # The fix: the app goes (its image was never there); the tenant becomes Ready.
    tenants.apply(real_cluster, stack.postgres_only(name))
    stack.wait_ready(real_cluster, name, timeout=120)
    assert _condition(real_cluster, name, "Stalled")["status"] == "False"


def test_too_little_memory_is_reported_as_oom_killed_until_the_limit_is_raised(
        real_cluster: ClusterHandle, name: str) -> None:
    starved = stack.postgres_only(name)
    tiny = {"requests": {"memory": "16Mi"}, "limits": {"memory": "16Mi"}}
    starved["spec"]["components"]["postgres"]["resources"] = tiny
    tenants.apply(real_cluster, starved)
    postgres = _wait_reason(real_cluster, name, "PostgresReady", "OOMKilled")
    assert postgres["status"] == "False" and "postgres-0" in postgres["message"]
    stalled = _wait_reason(real_cluster, name, "Stalled", "OOMKilled")
    assert stalled["status"] == "True"

    enough = stack.postgres_only(name)
    enough["spec"]["components"]["postgres"]["resources"] = {
        "requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    tenants.apply(real_cluster, enough)
    stack.wait_ready(real_cluster, name, timeout=180)
    ns = tenants.namespace_of(name)
    assert stack.psql(real_cluster, ns, "select 1") == "1"
