"""Notifications end to end: the operator as users run it, a real HTTP receiver recording
what it gets, and incidents caused for real (a failing backup, a component that cannot
scale, an expiring certificate)."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import tenants
from tests.support.backup_stack import Stack, condition_of, get_policy, policy_manifest, run_backup
from tests.support.clusters import ClusterHandle
from tests.support.drill_stack import drill_manifest, finished_drill, run_drill_pod
from tests.support.operator_identity import OperatorIdentity
from tests.support.postgres_server import PostgresServer
from tests.support.receiver import Receiver
from tests.support.s3_server import S3Server
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


def _incidents(cluster: ClusterHandle, name: str) -> list[str]:
    tenant = tenants.get(cluster, name) or {}
    return [i["key"] for i in (tenant.get("status") or {}).get("incidents") or []]


def test_failed_backup_is_notified_once_per_channel_and_resolved_once(
    cluster: ClusterHandle, stack: Stack, s3_server: S3Server, postgres_server: PostgresServer,
    receiver: Receiver, operator: OperatorProcess,
) -> None:
    ns, channels = stack.namespace, Channels(receiver)
    channels.subscribe(cluster, stack.tenant, ns)
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(
        policy_manifest("nightly", stack.tenant, ns, stack.bucket, s3_server.endpoint)))
    key = "BackupFailed/nightly"

    stack.kubelet.services[f"postgres.{ns}.svc"] = ("127.0.0.1", 9)  # the database is down
    first = run_backup(cluster, stack, "nightly", "fail-1")
    assert first.returncode != 0
    eventually(lambda: channels.webhook(key, "opened") and channels.slack("Backup failed"),
               timeout=120)
    [opened] = channels.webhook(key, "opened")
    assert opened["tenant"] == stack.tenant and opened["event"] == "BackupFailed"
    assert "nightly" in opened["summary"]
    [slack] = channels.slack("Backup failed")
    assert slack["channel"] == "#stackforge-alerts" and stack.tenant in slack["text"]
    assert _incidents(cluster, stack.tenant) == [key]

    # A second failed run is the same incident; several resyncs (3 s) add nothing.
    second = run_backup(cluster, stack, "nightly", "fail-2")
    assert second.returncode != 0
    run_id = json.loads(second.termination_message.strip().splitlines()[-1])["runId"]
    eventually(lambda: ((get_policy(cluster, ns, "nightly").get("status") or {})
                        .get("lastRun") or {}).get("id") == run_id, timeout=120)
    time.sleep(10)
    assert len(channels.webhook(key, "opened")) == 1
    assert len(channels.slack("Backup failed")) == 1

    # A good backup resolves it: one message per channel, then silence.
    stack.kubelet.services[f"postgres.{ns}.svc"] = ("127.0.0.1", postgres_server.port)
    good = run_backup(cluster, stack, "nightly", "good")
    assert good.returncode == 0, good.stderr
    eventually(lambda: condition_of(get_policy(cluster, ns, "nightly"), "LastBackupSucceeded")
               .get("status") == "True", timeout=120)
    eventually(lambda: channels.webhook(key, "resolved") and channels.slack("Resolved"),
               timeout=60)
    time.sleep(8)
    [resolved] = channels.webhook(key, "resolved")
    assert resolved["since"] == opened["since"] and resolved["id"] != opened["id"]
    assert len(channels.slack("Resolved: Backup failed")) == 1
    assert len(channels.webhook(key, "opened")) == 1
    assert _incidents(cluster, stack.tenant) == []
    # Every message went to a URL the operator read from a Secret; none is in its log.
    assert channels.token not in _log(operator)
    assert "delivered" in _log(operator)


def test_failed_drill_is_notified_and_resolved_by_a_passing_drill(
    cluster: ClusterHandle, backed_up: Stack, postgres_server: PostgresServer,
    receiver: Receiver, operator: OperatorProcess,
) -> None:
    stack, channels = backed_up, Channels(receiver)
    # Subscribed to drills only: the failing backup below is no message of theirs.
    channels.subscribe(cluster, stack.tenant, stack.namespace, slack=False,
                       events=["DrillFailed"])
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(drill_manifest(
        "lost", stack, backup={"source": "ById", "id": "20200101T000000Z-000000"})))
    run_drill_pod(cluster, stack, postgres_server, "lost")
    assert finished_drill(cluster, stack.namespace, "lost")["status"]["lastResult"][
        "verdict"] == "Failed"
    eventually(lambda: channels.webhook("DrillFailed/lost", "opened"), timeout=60)
    [opened] = channels.webhook("DrillFailed/lost", "opened")
    assert opened["summary"].startswith("DR drill lost failed run")

    stack.kubelet.services[f"postgres.{stack.namespace}.svc"] = ("127.0.0.1", 9)
    assert run_backup(cluster, stack, "nightly", "fail").returncode != 0
    tenants.wait_condition(cluster, stack.tenant, "BackupHealthy", "False", timeout=120)
    stack.kubelet.services[f"postgres.{stack.namespace}.svc"] = ("127.0.0.1",
                                                                 postgres_server.port)

    cluster.kubectl("apply", "--server-side", "-f", "-",
                    input=json.dumps(drill_manifest("monthly", stack)))
    run_drill_pod(cluster, stack, postgres_server, "monthly")
    assert finished_drill(cluster, stack.namespace, "monthly")["status"]["lastResult"][
        "verdict"] == "Passed"
    eventually(lambda: channels.webhook("DrillFailed/lost", "resolved"), timeout=60)
    time.sleep(6)
    bodies = [r.body for r in receiver.requests(channels.hook_path)]
    assert [(b["incident"], b["state"]) for b in bodies] == [
        ("DrillFailed/lost", "opened"), ("DrillFailed/lost", "resolved")]
    assert channels.token not in _log(operator)


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
        assert _incidents(cluster, name) == []
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
        assert "TenantIsolated" not in _incidents(cluster, name)


def test_deleting_a_tenant_resolves_its_open_incidents_once(
    cluster: ClusterHandle, receiver: Receiver, operator: OperatorProcess,
) -> None:
    channels = Channels(receiver)
    with _tenant(cluster, "bye", isolate=True) as (name, ns):
        tenants.wait_condition(cluster, name, "Isolated", "True")
        channels.subscribe(cluster, name, ns)
        eventually(lambda: channels.webhook("TenantIsolated", "opened"), timeout=60)
        eventually(lambda: "TenantIsolated" in _incidents(cluster, name), timeout=30)

        # The tenant alone: its namespace, and the channels' Secret, stay.
        tenants.delete(cluster, name, namespace=ns)
        resolved = eventually(lambda: channels.webhook("TenantIsolated", "resolved"),
                              timeout=60)
        assert resolved[0]["summary"] == "TenantIsolated resolved: tenant deleted"
        assert eventually(lambda: channels.slack("Resolved: TenantIsolated"), timeout=30)
        time.sleep(4)
        assert len(channels.webhook("TenantIsolated", "resolved")) == 1
        assert channels.token not in _log(operator)
