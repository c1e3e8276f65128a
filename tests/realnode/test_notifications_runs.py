"""Backup and drill incidents, notified end to end on the real node: runner pods that
fail and succeed for real, the operator sending to a real HTTP receiver, once per
incident and channel, resolved once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.realnode import runs
from tests.realnode.operators import operator_running
from tests.realnode.runs import (
    Tenant,
    condition_of,
    drill_manifest,
    finished_drill,
    get_policy,
    policy_manifest,
    run_backup,
    sandbox_of,
    watch_drill_pod,
)
from tests.support import operator_identity, tenants
from tests.support.channels import Channels, incidents
from tests.support.clusters import ClusterHandle
from tests.support.receiver import Receiver
from tests.support.s3_server import S3Server
from tests.support.tenants import eventually

WRONG_KEYS = {"AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1",
              "AWS_SECRET_ACCESS_KEY": "wrong-secret-wrong-secret-wrong-secret12"}


@pytest.fixture(scope="module")
def real_operator(
    real_operator_identity: operator_identity.OperatorIdentity,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """This module's operator retries a failed delivery after half a second."""
    with operator_running(real_operator_identity, tmp_path_factory,
                          STACKFORGE_NOTIFY_BACKOFF_SECONDS="0.5") as process:
        yield process


@pytest.fixture(scope="module")
def tenant(real_cluster: ClusterHandle, real_operator: OperatorProcess,
           pod_s3: S3Server) -> Iterator[Tenant]:
    """One seeded tenant with the BackupPolicy "nightly" (which drills restore)."""
    with runs.nightly_tenant(real_cluster, pod_s3, "nt") as made:
        yield made


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def _failing_policy(cluster: ClusterHandle, tenant: Tenant, s3: S3Server, name: str) -> None:
    """A policy of its own whose credentials Secret holds keys the S3 server refuses,
    in a bucket of its own (beside "nightly" it would be refused its place)."""
    credentials = f"s3-credentials-{name}"
    runs.put_s3_secrets(cluster, tenant.namespace, s3, credentials)
    tenants.put_secret(cluster, tenant.namespace, credentials, WRONG_KEYS)
    runs.apply(cluster, policy_manifest(name, tenant, s3.endpoint, bucket=s3.create_bucket(),
                                        credentials=credentials))


def test_failed_backup_is_notified_once_per_channel_and_resolved_once(
    real_cluster: ClusterHandle, tenant: Tenant, pod_s3: S3Server, receiver: Receiver,
    real_operator: OperatorProcess,
) -> None:
    cluster, ns, channels = real_cluster, tenant.namespace, Channels(receiver)
    channels.subscribe(cluster, tenant.name, ns)
    _failing_policy(cluster, tenant, pod_s3, "flaky")
    key = "BackupFailed/flaky"
    try:
        first = run_backup(cluster, ns, "flaky", "fail-1")
        assert first.returncode != 0, first.termination_message
        eventually(lambda: channels.webhook(key, "opened") and channels.slack("Backup failed"),
                   timeout=120)
        [opened] = channels.webhook(key, "opened")
        assert opened["tenant"] == tenant.name and opened["event"] == "BackupFailed"
        assert "flaky" in opened["summary"]
        [slack] = channels.slack("Backup failed")
        assert slack["channel"] == "#stackforge-alerts" and tenant.name in slack["text"]
        assert incidents(cluster, tenant.name) == [key]

        # A second failed run is the same incident; two resyncs (3 s) add nothing.
        second = run_backup(cluster, ns, "flaky", "fail-2")
        assert second.returncode != 0, second.termination_message
        run_id = second.outcome()["runId"]
        eventually(lambda: ((get_policy(cluster, ns, "flaky").get("status") or {})
                            .get("lastRun") or {}).get("id") == run_id, timeout=120)
        time.sleep(7)
        assert len(channels.webhook(key, "opened")) == 1
        assert len(channels.slack("Backup failed")) == 1

        # The right keys again: a good backup resolves it, one message per channel.
        runs.put_s3_secrets(cluster, ns, pod_s3, "s3-credentials-flaky")
        good = run_backup(cluster, ns, "flaky", "good")
        assert good.returncode == 0, good.termination_message
        eventually(lambda: condition_of(get_policy(cluster, ns, "flaky"),
                                        "LastBackupSucceeded").get("status") == "True",
                   timeout=120)
        eventually(lambda: channels.webhook(key, "resolved") and channels.slack("Resolved"),
                   timeout=60)
        time.sleep(7)
        [resolved] = channels.webhook(key, "resolved")
        assert resolved["since"] == opened["since"] and resolved["id"] != opened["id"]
        assert len(channels.slack("Resolved: Backup failed")) == 1
        assert len(channels.webhook(key, "opened")) == 1
        assert incidents(cluster, tenant.name) == []
        # Every message went to a URL the operator read from a Secret; none is in its log.
        assert channels.token not in real_operator.process.log_path.read_text()
        assert "delivered" in real_operator.process.log_path.read_text()
    finally:
        cluster.kubectl("delete", "sfbp", "flaky", "-n", ns, "--wait=false", check=False)


def test_failed_drill_is_notified_and_resolved_by_a_passing_drill(
    real_cluster: ClusterHandle, tenant: Tenant, pod_s3: S3Server, receiver: Receiver,
    real_operator: OperatorProcess,
) -> None:
    cluster, ns, channels = real_cluster, tenant.namespace, Channels(receiver)
    backed_up = run_backup(cluster, ns, "nightly", "for-drills")
    assert backed_up.returncode == 0, backed_up.termination_message
    run_id = backed_up.outcome()["runId"]
    eventually(lambda: ((get_policy(cluster, ns, "nightly").get("status") or {})
                        .get("lastSuccessfulRun") or {}).get("id") == run_id, timeout=120)
    # Subscribed to drills only: the failing backup below is no message of theirs.
    channels.subscribe(cluster, tenant.name, ns, slack=False, events=["DrillFailed"])
    try:
        runs.apply(cluster, drill_manifest(
            "lost", tenant, backup={"source": "ById", "id": "20200101T000000Z-000000"}))
        assert finished_drill(cluster, ns, "lost")["status"]["lastResult"][
            "verdict"] == "Failed"
        eventually(lambda: channels.webhook("DrillFailed/lost", "opened"), timeout=60)
        [opened] = channels.webhook("DrillFailed/lost", "opened")
        assert opened["summary"].startswith("DR drill lost failed run")

        _failing_policy(cluster, tenant, pod_s3, "broken")
        assert run_backup(cluster, ns, "broken", "fail").returncode != 0
        tenants.wait_condition(cluster, tenant.name, "BackupHealthy", "False", timeout=120)
        cluster.kubectl("delete", "sfbp", "broken", "-n", ns, check=False)

        runs.apply(cluster, drill_manifest("monthly", tenant))
        ran = watch_drill_pod(cluster, sandbox_of(cluster, ns, "monthly"))
        assert ran.returncode == 0, ran.termination_message
        assert finished_drill(cluster, ns, "monthly")["status"]["lastResult"][
            "verdict"] == "Passed"
        eventually(lambda: channels.webhook("DrillFailed/lost", "resolved"), timeout=60)
        time.sleep(6)
        bodies = [r.body for r in receiver.requests(channels.hook_path)]
        assert [(b["incident"], b["state"]) for b in bodies] == [
            ("DrillFailed/lost", "opened"), ("DrillFailed/lost", "resolved")]
        assert channels.token not in real_operator.process.log_path.read_text()
    finally:
        cluster.kubectl("delete", "sfdr", "--all", "-n", ns, "--wait=false", check=False)
        cluster.kubectl("delete", "sfbp", "broken", "-n", ns, "--wait=false", check=False)
