"""controller.py against the API server: an object whose deletion the operator
never saw is forgotten once the API server says it is gone.

kopf re-lists after its watch expired (410 Gone) and reports only what exists:
a tenant deleted in that gap had no DELETED event, and the controller held it
and reconciled it for ever. Here the controller is simply not told of the
deletion, which is what that gap amounts to; its reconcile writes the object's
status, as the operator's do, and the API server answers 404.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator import API_GROUP, API_VERSION, kube
from stackforge_operator.controller import Controller
from tests.support import tenants
from tests.support.clusters import ClusterHandle

pytestmark = pytest.mark.usefixtures("kube_as_operator", "default_image_catalog")


@dataclass
class Done:
    requeue_after: float = 0.2
    latest: dict[str, Any] | None = None


def test_an_object_deleted_unseen_is_forgotten_after_its_status_write_is_refused(
        cluster: ClusterHandle, namespace: str) -> None:
    tenants.apply(cluster, tenants.small_tenant("ghost", namespace=namespace))
    body = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, "stackforgetenants", "ghost")
    assert isinstance(body, dict)
    calls, lock = [], threading.Lock()

    def reconcile(obj: Mapping[str, Any]) -> Done:
        with lock:
            calls.append(obj["metadata"]["name"])
        kube.patch_status(f"{API_GROUP}/{API_VERSION}", "StackForgeTenant",
                          obj["metadata"]["name"], obj["metadata"]["namespace"],
                          {"observedGeneration": 1})
        return Done()

    controller = Controller("StackForgeTenant", reconcile, workers=1)
    key = f"{namespace}/ghost"

    async def scenario() -> None:
        controller.start()
        controller.observed(body)
        while not calls:
            await asyncio.sleep(0.05)
        # Deleted; the controller is not told (the gap of a re-list).
        client.CustomObjectsApi(cluster.api).delete_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, "stackforgetenants", "ghost")
        deadline = asyncio.get_running_loop().time() + 30
        while key in controller.keys():  # noqa: SIM118 - a method, not a dict
            assert asyncio.get_running_loop().time() < deadline, calls
            await asyncio.sleep(0.1)
        seen = len(calls)
        controller.poke(key)
        await asyncio.sleep(1.0)  # five of its requeues
        assert len(calls) == seen
        await controller.stop()

    asyncio.run(scenario())
