"""A tenant's notifications: incidents from the status just computed, and its channels.

The pure parts live in :mod:`stackforge_operator.notify`; this module adds the
I/O a reconcile owns: reading the channels' URLs from the tenant's Secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from stackforge_operator import config, kube
from stackforge_operator.builders import credentials
from stackforge_operator.models.backup import BackupPolicyStatus
from stackforge_operator.models.common import SecretKeyRef
from stackforge_operator.models.tenant import (
    NotificationsSpec,
    OpenIncident,
    StackForgeTenantSpec,
    StackForgeTenantStatus,
)
from stackforge_operator.notify import changes, incidents, payloads
from stackforge_operator.notify.sender import Delivery

logger = logging.getLogger(__name__)


def review(
    new: StackForgeTenantStatus,
    old_incidents: Sequence[OpenIncident],
    policies: Sequence[dict[str, Any]],
    spec: NotificationsSpec | None,
    now: datetime,
) -> tuple[list[OpenIncident], list[changes.Change]]:
    """(incidents to keep in status, messages to send once that status is written)."""
    policy_states = [
        (p["metadata"]["name"], BackupPolicyStatus.model_validate(p.get("status") or {}))
        for p in policies]
    found = incidents.detect(
        new, policy_states, now,
        not_ready_after=timedelta(seconds=config.NOT_READY_NOTIFY_SECONDS))
    return changes.diff(old_incidents, found, changes.enabled_events(spec), now)


def recorded(body: Mapping[str, Any], wanted: Sequence[OpenIncident]) -> bool:
    """The tenant ``body`` holds exactly the ``wanted`` incidents in its status."""
    try:
        held = StackForgeTenantStatus.model_validate(body.get("status") or {}).incidents
    except ValidationError:
        return False
    return ([i.model_dump(mode="json") for i in held]
            == [i.model_dump(mode="json") for i in wanted])


def _url(namespace: str, ref: SecretKeyRef) -> str | None:
    secret = kube.get("v1", "Secret", ref.name, namespace)
    url = credentials.decode(secret).get(ref.key, "").strip() if secret else ""
    return url if url.startswith(("https://", "http://")) else None


def deliveries(
    tenant: str, namespace: str, spec: NotificationsSpec | None,
    to_send: Sequence[changes.Change],
) -> list[Delivery]:
    """Every message to every channel. A channel whose URL is missing is skipped:
    the tenant already reports the missing Secret as a problem."""
    if spec is None or not to_send:
        return []
    out: list[Delivery] = []
    channels: list[tuple[str, SecretKeyRef, str | None]] = []
    if spec.slack is not None:
        channels.append(("slack", spec.slack.webhook_url_secret_ref, spec.slack.channel))
    channels += [(f"webhook/{hook.name}", hook.url_secret_ref, None) for hook in spec.webhooks]
    for channel, ref, slack_channel in channels:
        url = _url(namespace, ref)
        if url is None:
            logger.warning("tenant %s: %s has no usable URL in Secret %s key %s; "
                           "%d notifications not sent", tenant, channel, ref.name, ref.key,
                           len(to_send))
            continue
        for change in to_send:
            payload = (payloads.slack(tenant, change, slack_channel) if channel == "slack"
                       else payloads.webhook(tenant, change))
            out.append(Delivery(url=url, payload=payload, event=change.event.value,
                                label=f"tenant {tenant} {channel} {change.key} {change.state}"))
    return out


def farewell(body: Mapping[str, Any], now: datetime) -> list[Delivery]:
    """Messages resolving every incident a just-deleted tenant had announced.

    Best effort, by design: sent once, by the active replica that sees the
    deletion, and only while the channels' Secrets still exist (deleting the
    tenant alone keeps its namespace; deleting the namespace may take them first).
    """
    try:
        spec = StackForgeTenantSpec.model_validate(body.get("spec") or {})
        status = StackForgeTenantStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return []
    messages = changes.farewell(
        status.incidents, changes.enabled_events(spec.notifications), now)
    meta = body["metadata"]
    return deliveries(meta["name"], meta["namespace"], spec.notifications, messages)
