"""A tenant's Slack and webhook channels on the test receiver, and what arrived on them."""

from __future__ import annotations

import uuid
from typing import Any

from kubernetes import client

from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.receiver import Receiver


class Channels:
    """A tenant's Slack and webhook channels on the receiver; the token is the URLs' secret."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.token = uuid.uuid4().hex
        self.slack_path = f"/slack/{self.token}"
        self.hook_path = f"/hooks/{self.token}"

    def subscribe(self, cluster: ClusterHandle, tenant: str, namespace: str,
                  *, slack: bool = True, events: list[str] | None = None) -> None:
        tenants.put_secret(cluster, namespace, "alerts", {
            "slack-url": self.receiver.url(self.slack_path),
            "hook-url": self.receiver.url(self.hook_path),
        })
        notifications: dict[str, Any] = {
            "webhooks": [{"name": "ops", "urlSecretRef": {"name": "alerts", "key": "hook-url"}}]}
        if slack:
            notifications["slack"] = {
                "webhookUrlSecretRef": {"name": "alerts", "key": "slack-url"},
                "channel": "#stackforge-alerts"}
        if events is not None:
            notifications["events"] = events
        client.CustomObjectsApi(cluster.api).patch_namespaced_custom_object(
            "stackforge.io", "v1alpha1", namespace, "stackforgetenants", tenant,
            {"spec": {"notifications": notifications}})

    def webhook(self, incident: str, state: str, *, delivered: bool = True) -> list[Any]:
        """Webhook messages about ``incident`` in ``state`` (answered 200 unless not delivered)."""
        return [r.body for r in self.receiver.requests(self.hook_path)
                if r.body.get("incident") == incident and r.body.get("state") == state
                and (r.status == 200 or not delivered)]

    def slack(self, text: str) -> list[Any]:
        return [r.body for r in self.receiver.requests(self.slack_path)
                if r.status == 200 and text in r.body.get("text", "")]


def incidents(cluster: ClusterHandle, name: str) -> list[str]:
    """The keys of the tenant's open incidents, from its status."""
    tenant = tenants.get(cluster, name) or {}
    return [i["key"] for i in (tenant.get("status") or {}).get("incidents") or []]
