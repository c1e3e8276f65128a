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


def test_a_missing_image_and_too_little_memory_stall_the_tenant_until_the_spec_is_fixed(
        real_cluster: ClusterHandle, name: str) -> None:
    """Both faults at once in one tenant (one tenant's start-up, not two): an app whose
    image does not exist, and PostgreSQL given 16 Mi of memory."""
    broken = stack.postgres_only(name)
    broken["spec"]["components"]["apps"] = [
        {"name": "api", "image": "localhost/stackforge/no-such-image:1", "port": 8080}]
    tiny = {"requests": {"memory": "16Mi"}, "limits": {"memory": "16Mi"}}
    broken["spec"]["components"]["postgres"]["resources"] = tiny
    tenants.apply(real_cluster, broken)

    apps = _wait_reason(real_cluster, name, "AppsReady", "ImagePullBackOff")
    assert apps["status"] == "False"
    assert "api-" in apps["message"] and "no-such-image" in apps["message"]
    postgres = _wait_reason(real_cluster, name, "PostgresReady", "OOMKilled")
    assert postgres["status"] == "False" and "postgres-0" in postgres["message"]
    stalled = _condition(real_cluster, name, "Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] in ("ImagePullBackOff", "OOMKilled"), stalled
    assert "no-such-image" in stalled["message"] and "OOMKilled" in stalled["message"]

    # The fix: the app goes (its image was never there) and PostgreSQL gets enough
    # memory; the pod the old template broke is replaced, and the tenant is Ready.
    fixed = stack.postgres_only(name)
    fixed["spec"]["components"]["postgres"]["resources"] = {
        "requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    tenants.apply(real_cluster, fixed)
    stack.wait_ready(real_cluster, name, timeout=180)
    assert _condition(real_cluster, name, "Stalled")["status"] == "False"
    assert stack.psql(real_cluster, tenants.namespace_of(name), "select 1") == "1"
