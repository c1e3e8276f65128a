"""A tenant's notifications: incidents from the status just computed, and its channels.

The pure parts live in :mod:`stackforge_operator.notify`; this module adds the
I/O a reconcile owns: reading the channels' URLs, accounts and CAs from the
tenant's Secrets.
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
    CRITICAL_EVENTS,
    EmailChannel,
    NotificationsSpec,
    OpenIncident,
    SmsChannel,
    SmsEncoding,
    SmtpSecurity,
    StackForgeTenantSpec,
    StackForgeTenantStatus,
)
from stackforge_operator.notify import changes, incidents, payloads, smtp
from stackforge_operator.notify.sender import Delivery, HttpPost, Mail

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


def _value(namespace: str, ref: SecretKeyRef) -> str | None:
    secret = kube.get("v1", "Secret", ref.name, namespace)
    value = credentials.decode(secret).get(ref.key) if secret else None
    return value.strip() if value is not None else None


def _url(namespace: str, ref: SecretKeyRef) -> str | None:
    url = _value(namespace, ref) or ""
    return url if url.startswith(("https://", "http://")) else None


def _skipped(tenant: str, channel: str, why: str, count: int) -> None:
    logger.warning("tenant %s: %s %s; %d notifications not sent", tenant, channel, why, count)


def _http_channels(tenant: str, namespace: str, spec: NotificationsSpec,
                   to_send: Sequence[changes.Change]) -> list[Delivery]:
    out: list[Delivery] = []
    channels: list[tuple[str, SecretKeyRef, str | None]] = []
    if spec.slack is not None:
        channels.append(("slack", spec.slack.webhook_url_secret_ref, spec.slack.channel))
    channels += [(f"webhook/{hook.name}", hook.url_secret_ref, None) for hook in spec.webhooks]
    for channel, ref, slack_channel in channels:
        url = _url(namespace, ref)
        if url is None:
            _skipped(tenant, channel, f"has no usable URL in Secret {ref.name} key {ref.key}",
                     len(to_send))
            continue
        for change in to_send:
            payload = (payloads.slack(tenant, change, slack_channel) if channel == "slack"
                       else payloads.webhook(tenant, change))
            out.append(Delivery(HttpPost(url, json=payload), event=change.event.value,
                                label=f"tenant {tenant} {channel} {change.key} {change.state}",
                                order=f"{tenant} {channel} {change.key}"))
    return out


def _smtp_server(namespace: str, channel: EmailChannel) -> smtp.SmtpServer | str:
    """The server with its credentials and CA, or why there is none."""
    username = password = ca = None
    account = channel.credentials_secret_ref
    if account is not None:
        username, password = (_value(namespace, ref) for ref in account.key_refs())
        if username is None or password is None:
            return f"has no user name or password in Secret {account.name}"
    if channel.ca_secret_ref is not None:
        ca = _value(namespace, channel.ca_secret_ref)
        if not ca:
            return (f"has no CA in Secret {channel.ca_secret_ref.name} "
                    f"key {channel.ca_secret_ref.key}")
    return smtp.SmtpServer(channel.host, channel.port,
                           implicit_tls=channel.security is SmtpSecurity.TLS,
                           ca_pem=ca, username=username, password=password)


def _email(tenant: str, namespace: str, channel: EmailChannel,
           to_send: Sequence[changes.Change]) -> list[Delivery]:
    server = _smtp_server(namespace, channel)
    if isinstance(server, str):
        _skipped(tenant, "email", server, len(to_send))
        return []
    return [Delivery(Mail(server, payloads.email(tenant, change, channel.from_address,
                                                 channel.to)),
                     event=change.event.value,
                     label=f"tenant {tenant} email {change.key} {change.state}",
                     order=f"{tenant} email {change.key}")
            for change in to_send]


def _sms(tenant: str, namespace: str, channel: SmsChannel,
         to_send: Sequence[changes.Change]) -> list[Delivery]:
    critical = [c for c in to_send if c.event in CRITICAL_EVENTS]
    if not critical:
        return []
    url = _url(namespace, channel.url_secret_ref)
    if url is None:
        ref = channel.url_secret_ref
        _skipped(tenant, "sms", f"has no usable URL in Secret {ref.name} key {ref.key}",
                 len(critical))
        return []
    headers: dict[str, str] = {}
    if channel.authorization_secret_ref is not None:
        authorization = _value(namespace, channel.authorization_secret_ref)
        if not authorization:
            _skipped(tenant, "sms", "has no Authorization value in Secret "
                     f"{channel.authorization_secret_ref.name}", len(critical))
            return []
        headers["Authorization"] = authorization
    fields: dict[str, str] = {}
    if channel.credential_fields_secret_ref is not None:
        secret = kube.get("v1", "Secret", channel.credential_fields_secret_ref.name, namespace)
        if secret is None:
            _skipped(tenant, "sms", "has no Secret "
                     f"{channel.credential_fields_secret_ref.name}", len(critical))
            return []
        fields = credentials.decode(secret)
    names = {"to": channel.field_names.to, "from": channel.field_names.from_,
             "body": channel.field_names.body}
    out = []
    for change in critical:
        text = payloads.sms_text(tenant, change)
        for number, recipient in enumerate(channel.to, 1):
            body = payloads.sms_fields(names, channel.from_number, recipient, text, fields)
            post = (HttpPost(url, json=body, headers=headers)
                    if channel.encoding is SmsEncoding.JSON
                    else HttpPost(url, form=body, headers=headers))
            # Recipients by their place in the list: a phone number is personal data.
            out.append(Delivery(post, event=change.event.value,
                                label=f"tenant {tenant} sms#{number} {change.key} "
                                      f"{change.state}",
                                order=f"{tenant} sms#{number} {change.key}"))
    return out


def deliveries(
    tenant: str, namespace: str, spec: NotificationsSpec | None,
    to_send: Sequence[changes.Change],
) -> list[Delivery]:
    """Every message to every channel (SMS: critical events only). A channel whose
    Secret is missing is skipped: the tenant already reports it as a problem."""
    if spec is None or not to_send:
        return []
    out = _http_channels(tenant, namespace, spec, to_send)
    if spec.email is not None:
        out += _email(tenant, namespace, spec.email, to_send)
    if spec.sms is not None:
        out += _sms(tenant, namespace, spec.sms, to_send)
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
