"""Notifications end to end: the operator as users run it, a real HTTP receiver recording
what it gets, and incidents caused for real (a component that cannot scale, an expiring
certificate, isolation). On kwok: these need tenants' objects, not running pods; the
incidents of backup and drill runs are notified on the real node
(tests/realnode/test_notifications_runs.py)."""

from __future__ import annotations

import contextlib
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator.devcluster.operator_process import OperatorProcess
from stackforge_operator.models.tenant import CRITICAL_EVENTS
from stackforge_operator.notify import payloads
from tests.support import tenants
from tests.support.channels import Channels, incidents
from tests.support.clusters import ClusterHandle
from tests.support.operator_identity import OperatorIdentity
from tests.support.receiver import Receiver
from tests.support.smtp_server import USERNAME, SmtpServer
from tests.support.tenants import eventually

NOT_READY_SECONDS = 8
# The operators' alert comes first (the runbook's 2 min, shortened here).
DEGRADED_SECONDS = 3
# Longer than the bound on status below: if sending blocked reconciling, the test would see it.
SEND_TIMEOUT_SECONDS = 20


@pytest.fixture(scope="module")
def operator(
    operator_identity_installed: OperatorIdentity, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator (as its ServiceAccount) with a short not-Ready threshold and quick
    retries (this module only)."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(
        operator_identity_installed.kubeconfig, log, extra_args=("--verbose",),
        extra_env={
            "STACKFORGE_RESYNC_SECONDS": "3", "STACKFORGE_STALLED_RECHECK_SECONDS": "3",
            "STACKFORGE_NOT_READY_NOTIFY_SECONDS": str(NOT_READY_SECONDS),
            "STACKFORGE_DEGRADED_NOTIFY_SECONDS": str(DEGRADED_SECONDS),
            "STACKFORGE_NOTIFY_BACKOFF_SECONDS": "0.5",
            "STACKFORGE_NOTIFY_TIMEOUT_SECONDS": str(SEND_TIMEOUT_SECONDS),
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@contextlib.contextmanager
def _tenant(cluster: ClusterHandle, prefix: str, **spec: Any) -> Iterator[tuple[str, str]]:
    """A small tenant with a fresh name, deleted in the background afterwards: (name, ns)."""
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    tenants.apply(cluster, tenants.small_tenant(name, **spec))
    try:
        yield name, tenants.namespace_of(name)
    finally:
        tenants.discard(cluster, name)


def _log(operator: OperatorProcess) -> str:
    return Path(operator.process.log_path).read_text()


def _pods(cluster: ClusterHandle, namespace: str) -> int:
    return len(client.CoreV1Api(cluster.api).list_namespaced_pod(namespace).items)


def _quota_used_pods(cluster: ClusterHandle, namespace: str) -> str | None:
    quota = client.CoreV1Api(cluster.api).read_namespaced_resource_quota("tenant-quota",
                                                                         namespace)
    return ((quota.status.used or {}) if quota.status else {}).get("pods")


def _app_replicas(cluster: ClusterHandle, name: str, replicas: int, pods: int) -> None:
    """The small tenant with ``replicas`` of its app, in a namespace allowing ``pods`` pods."""
    app = {"name": "api", "image": "registry.example.com/shop/api:1.0.0", "port": 8080,
           "replicas": replicas}
    tenants.apply(cluster, tenants.small_tenant(name, quota={"pods": pods},
                                                components={"apps": [app]}))


def test_tenant_down_beyond_the_threshold_is_notified_after_retries_and_resolved(
    cluster: ClusterHandle, receiver: Receiver, operator: OperatorProcess,
) -> None:
    channels = Channels(receiver)
    with _tenant(cluster, "down") as (name, ns):
        tenants.wait_condition(cluster, name, "Ready", "True")
        channels.subscribe(cluster, name, ns, slack=False)
        # A quota of exactly the pods running: the app cannot scale up (an outage the
        # operator sees as AppsReady=False, as it would see a crash-looping pod).
        pods = _pods(cluster, ns)
        _app_replicas(cluster, name, 1, pods)
        eventually(lambda: _quota_used_pods(cluster, ns) == str(pods), timeout=60)
        tenants.wait_condition(cluster, name, "Ready", "True")
        receiver.fail_next(2, 500)  # the receiver is in trouble at first

        _app_replicas(cluster, name, 2, pods)
        down = tenants.wait_condition(cluster, name, "AppsReady", "False")
        down_at = time.monotonic()
        assert tenants.condition(down, "Ready")["status"] == "False"  # type: ignore[index]
        degraded = "ComponentDegraded/Apps"
        # Nothing before the thresholds...
        time.sleep(DEGRADED_SECONDS / 2)
        assert channels.webhook(degraded, "opened", delivered=False) == []
        # ... then the operators' alert, delivered at the third attempt ...
        eventually(lambda: channels.webhook(degraded, "opened"), timeout=60)
        attempts = channels.webhook(degraded, "opened", delivered=False)
        assert len(attempts) == 3 and len({a["id"] for a in attempts}) == 1
        assert channels.webhook("TenantNotReady", "opened", delivered=False) == []
        # ... and after the longer threshold the customers' one, once.
        eventually(lambda: channels.webhook("TenantNotReady", "opened"), timeout=60)
        assert time.monotonic() - down_at >= NOT_READY_SECONDS - 3
        [opened] = channels.webhook("TenantNotReady", "opened")
        assert opened["event"] == "TenantNotReady" and "AppsReady" in opened["summary"]
        time.sleep(8)  # resyncs while still down
        assert len(channels.webhook("TenantNotReady", "opened", delivered=False)) == 1
        assert len(channels.webhook(degraded, "opened", delivered=False)) == 3

        _app_replicas(cluster, name, 1, pods)  # back within the quota
        tenants.wait_condition(cluster, name, "Ready", "True")
        eventually(lambda: channels.webhook("TenantNotReady", "resolved")
                   and channels.webhook(degraded, "resolved"), timeout=60)
        time.sleep(6)
        assert len(channels.webhook("TenantNotReady", "resolved")) == 1
        assert len(channels.webhook(degraded, "resolved")) == 1
        assert incidents(cluster, name) == []
        log = _log(operator)
        assert channels.token not in log and "retrying in" in log


def test_a_hanging_receiver_does_not_delay_reconciling(
    cluster: ClusterHandle, receiver: Receiver, operator: OperatorProcess,
) -> None:
    channels = Channels(receiver)
    spec: dict[str, Any] = {"domain": "shop.example.com", "tls": {"secretName": "shop-tls"}}
    with _tenant(cluster, "hang", **spec) as (name, ns):
        manifest = tenants.small_tenant(name, **spec)
        try:
            cert, key = tenants.certificate_pem(days=10)
            tenants.put_secret(cluster, ns, "shop-tls", {"tls.crt": cert, "tls.key": key})
            tenants.wait_condition(cluster, name, "CertificatesValid", "False")
            receiver.hang(3 * SEND_TIMEOUT_SECONDS)
            channels.subscribe(cluster, name, ns, slack=False)
            incident = "CertificateExpiring/shop-tls"
            # The message is on its way and the receiver holds it...
            eventually(lambda: channels.webhook(incident, "opened", delivered=False), timeout=60)

            # ... while the tenant's status keeps up with its spec.
            started = time.monotonic()
            manifest["spec"]["components"]["kong"] = {"replicas": 2}
            tenants.apply(cluster, manifest)

            def kong_scaled() -> bool:
                tenant = tenants.get(cluster, name) or {}
                st = tenant.get("status") or {}
                return bool(st.get("observedGeneration") == tenant["metadata"]["generation"]
                            and st.get("readyReplicas") == 2)

            eventually(kong_scaled, timeout=30)
            assert time.monotonic() - started < SEND_TIMEOUT_SECONDS / 2
            delivered = f"notification tenant {name} webhook/ops {incident} opened delivered"
            assert delivered not in _log(operator)  # still held by the receiver

            receiver.hang(0)  # the receiver answers at last
            eventually(lambda: delivered in _log(operator), timeout=60)
            assert len(channels.webhook(incident, "opened")) >= 1
            assert channels.token not in _log(operator)
        finally:
            receiver.hang(0)


def test_isolation_is_notified_while_it_lasts(
    cluster: ClusterHandle, receiver: Receiver, operator: OperatorProcess,
) -> None:
    channels = Channels(receiver)
    with _tenant(cluster, "cut") as (name, ns):
        tenants.wait_condition(cluster, name, "Ready", "True")
        tenants.wait_condition(cluster, name, "Isolated", "False")
        channels.subscribe(cluster, name, ns)
        tenants.apply(cluster, tenants.small_tenant(name, isolate=True))
        tenants.wait_condition(cluster, name, "Isolated", "True")
        eventually(lambda: channels.webhook("TenantIsolated", "opened")
                   and channels.slack("isolated"), timeout=60)
        time.sleep(6)  # resyncs while isolated
        assert len(channels.webhook("TenantIsolated", "opened")) == 1

        tenants.apply(cluster, tenants.small_tenant(name, isolate=False))
        tenants.wait_condition(cluster, name, "Isolated", "False")
        eventually(lambda: channels.webhook("TenantIsolated", "resolved"), timeout=60)
        assert "TenantIsolated" not in incidents(cluster, name)


def test_deleting_a_tenant_resolves_its_open_incidents_once(
    cluster: ClusterHandle, receiver: Receiver, operator: OperatorProcess,
) -> None:
    channels = Channels(receiver)
    with _tenant(cluster, "bye", isolate=True) as (name, ns):
        tenants.wait_condition(cluster, name, "Isolated", "True")
        channels.subscribe(cluster, name, ns)
        eventually(lambda: channels.webhook("TenantIsolated", "opened"), timeout=60)
        eventually(lambda: "TenantIsolated" in incidents(cluster, name), timeout=30)

        # The tenant alone: its namespace, and the channels' Secret, stay.
        tenants.delete(cluster, name, namespace=ns)
        resolved = eventually(lambda: channels.webhook("TenantIsolated", "resolved"),
                              timeout=60)
        assert resolved[0]["summary"] == "TenantIsolated resolved: tenant deleted"
        assert eventually(lambda: channels.slack("Resolved: TenantIsolated"), timeout=30)
        time.sleep(4)
        assert len(channels.webhook("TenantIsolated", "resolved")) == 1
        assert channels.token not in _log(operator)


def _mails(server: SmtpServer, incident: str, state: str) -> list[EmailMessage]:
    return [r.message for r in server.messages()
            if r.message["X-StackForge-Incident"] == incident
            and r.message["X-StackForge-State"] == state]


def _texts(receiver: Receiver, path: str, incident_word: str) -> list[dict[str, str]]:
    found = []
    for request in receiver.requests(path):
        fields = {k: v[0] for k, v in urllib.parse.parse_qs(request.body).items()}
        if request.status == 200 and incident_word in fields.get("Body", ""):
            found.append({**fields, "Authorization": request.headers.get("Authorization", "")})
    return found


def test_email_hears_of_every_incident_and_sms_of_critical_ones_only(
    cluster: ClusterHandle, receiver: Receiver, operator: OperatorProcess,
) -> None:
    """The runbook's channels: email (a real SMTP server, STARTTLS verified against its
    CA, a login) gets each incident once opened and once resolved; SMS (a provider's
    form API on the receiver) only the critical one. A first 451 is retried."""
    password = secrets.token_urlsafe(16)
    sms_path = f"/2010-04-01/Accounts/AC{uuid.uuid4().hex}/Messages.json"
    spec: dict[str, Any] = {"domain": "shop.example.com", "tls": {"secretName": "shop-tls"}}
    with SmtpServer(password) as mail, _tenant(cluster, "mail", **spec) as (name, ns):
        cert, key = tenants.certificate_pem(days=90)
        tenants.put_secret(cluster, ns, "shop-tls", {"tls.crt": cert, "tls.key": key})
        tenants.wait_condition(cluster, name, "Ready", "True")
        tenants.put_secret(cluster, ns, "alert-accounts", {
            "smtp-username": USERNAME, "smtp-password": password, "smtp-ca": mail.ca_pem,
            "sms-url": receiver.url(sms_path), "sms-authorization": f"Basic {password}"})
        client.CustomObjectsApi(cluster.api).patch_namespaced_custom_object(
            "stackforge.io", "v1alpha1", ns, "stackforgetenants", name, {"spec": {
                "notifications": {
                    "email": {"host": mail.host, "port": mail.port,
                              "credentialsSecretRef": {"name": "alert-accounts",
                                                       "usernameKey": "smtp-username",
                                                       "passwordKey": "smtp-password"},
                              "caSecretRef": {"name": "alert-accounts", "key": "smtp-ca"},
                              "fromAddress": "alerts@stackforge.io",
                              "to": ["ops@stackforge.io", "oncall@stackforge.io"]},
                    "sms": {"urlSecretRef": {"name": "alert-accounts", "key": "sms-url"},
                            "authorizationSecretRef": {"name": "alert-accounts",
                                                       "key": "sms-authorization"},
                            "fromNumber": "+15550100000", "to": ["+15550100001"]}}}})
        mail.fail_next(1)  # the server is busy at first: 451, sent again
        # A certificate about to expire (a warning) and the tenant isolated (critical).
        cert, key = tenants.certificate_pem(days=10)
        tenants.put_secret(cluster, ns, "shop-tls", {"tls.crt": cert, "tls.key": key})
        expiring = "CertificateExpiring/shop-tls"
        eventually(lambda: _mails(mail, expiring, "opened"), timeout=60)
        tenants.apply(cluster, tenants.small_tenant(name, isolate=True, **spec))
        eventually(lambda: _mails(mail, "TenantIsolated", "opened"), timeout=60)
        [text] = eventually(lambda: _texts(receiver, sms_path, "TenantIsolated"), timeout=60)
        assert text["To"] == "+15550100001" and text["From"] == "+15550100000"
        assert text["Authorization"] == f"Basic {password}"
        assert text["Body"].startswith(f"StackForge [{name}] TenantIsolated")

        # Healed: a fresh certificate, the isolation lifted.
        cert, key = tenants.certificate_pem(days=90)
        tenants.put_secret(cluster, ns, "shop-tls", {"tls.crt": cert, "tls.key": key})
        tenants.apply(cluster, tenants.small_tenant(name, isolate=False, **spec))
        eventually(lambda: _mails(mail, expiring, "resolved")
                   and _mails(mail, "TenantIsolated", "resolved"), timeout=60)
        eventually(lambda: _texts(receiver, sms_path, "Resolved: TenantIsolated"), timeout=60)
        time.sleep(6)  # resyncs: nothing more is sent
        for incident in (expiring, "TenantIsolated"):
            [opened] = _mails(mail, incident, "opened")
            [resolved] = _mails(mail, incident, "resolved")
            assert resolved["In-Reply-To"] == opened["Message-ID"]
            assert opened["To"] == "ops@stackforge.io, oncall@stackforge.io"
        received = mail.messages()
        assert {r.login for r in received} == {USERNAME}
        assert all(r.recipients == ["ops@stackforge.io", "oncall@stackforge.io"]
                   for r in received)
        # SMS: the critical incident, once opened and once resolved; nothing else
        # but critical ones (a slow start could add TenantNotReady, critical too).
        assert len(_texts(receiver, sms_path, "TenantIsolated")) == 2
        titles = [payloads.event_title(e) for e in CRITICAL_EVENTS]
        assert all(any(f"[{name}] {t}" in b or f"Resolved: {t}" in b for t in titles)
                   for b in (t["Body"] for t in _texts(receiver, sms_path, ""))), titles
        assert _texts(receiver, sms_path, "Certificate") == []
        log = _log(operator)
        assert f"tenant {name} email " in log and "attempt 1 failed (SMTP 451)" in log
        for secret in (password, "+15550100001", sms_path):
            assert secret not in log
