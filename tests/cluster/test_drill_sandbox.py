"""reconcile/drill.py against the API server: how a run makes its sandbox, and
how it ends when it cannot go on or is looked at late.

A run's first pass makes the sandbox without reading any of it first (the
scratch pod's start is part of a physical drill's RTO, and the sandbox's name is
new), and the scratch database stays as the run made it when the drill's
sandbox settings change mid-run (re-rendered, it would replace the pod and start
the restore over). A run whose policy goes away still ends at its TTL with its
sandbox deleted, and a Job that ended in time gives the run its verdict even
when the operator reads it after the TTL. A deleted drill's sandboxes go with
it, also when it was deleted while no operator ran. The nodes are kwok's:
nothing has to run, only the objects the operator writes are looked at.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kopf
import pytest
from kubernetes import client

from stackforge_operator import API_GROUP, API_VERSION
from stackforge_operator.builders import drill as builders
from stackforge_operator.devcluster.operator_process import OperatorProcess
from stackforge_operator.reconcile import drill, drill_orphans
from tests.support import audit, kwok_jobs, tenants
from tests.support.clusters import ClusterHandle
from tests.support.metrics import request_totals
from tests.support.operator_identity import OperatorIdentity
from tests.support.secrets import FAKE_CA_PEM, S3_KEYS, put_secret

pytestmark = pytest.mark.usefixtures("kube_as_operator", "default_image_catalog")


@pytest.fixture(autouse=True)
def _names_free(cluster: ClusterHandle) -> None:
    """Each test makes its tenants anew: an earlier test's, its namespace still
    going, would keep the name (TenantNameTaken) and this test's would be no
    tenant to back up or drill."""
    tenants.remove_namesakes(cluster, "drilled")

API = f"{API_GROUP}/{API_VERSION}"
# What a sandbox is made of, as the API server's request counters name them.
# Not its ServiceAccount: the API server's own admission reads the new
# namespace's default account when the scratch pod is created.
SANDBOX_RESOURCES = ("namespaces", "networkpolicies", "services",
                     "statefulsets", "configmaps", "jobs")


def _drill(cluster: ClusterHandle, namespace: str, name: str = "nightly-check") -> dict[str, Any]:
    found = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, "drdrills", name)
    assert isinstance(found, dict)  # the client types a custom object as a bare object
    return found


def _scratch(cluster: ClusterHandle, sandbox: str) -> Any:
    return client.AppsV1Api(cluster.api).read_namespaced_stateful_set(builders.SCRATCH, sandbox)


def _drill_with_a_backup(cluster: ClusterHandle, namespace: str,
                         storage: dict[str, Any] | None = None) -> None:
    """Tenant "drilled", policy "nightly" with a complete backup, DRDrill "nightly-check".
    Without ``storage``, keys of their own (the operator lends no ambient identity)."""
    tenants.apply(cluster, tenants.small_tenant("drilled", namespace=namespace))
    if storage is None:
        put_secret(cluster, namespace, "drill-s3", S3_KEYS)
        storage = {"credentialsSecretRef": {"name": "drill-s3"}}
    cluster.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-",
                    input=json.dumps({
                        "apiVersion": API, "kind": "BackupPolicy",
                        "metadata": {"name": "nightly", "namespace": namespace},
                        "spec": {"tenantRef": {"name": "drilled"}, "schedule": "0 2 * * *",
                                 "storage": {"bucket": "backups", **(storage or {})},
                                 "retention": {"keepLast": 3}}}))
    # A complete backup, as the policy's status would say after its first run.
    cluster.kubectl("patch", "backuppolicies.stackforge.io", "nightly", "-n", namespace,
                    "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
                        "lastSuccessfulRun": {"id": "20261204T020000Z",
                                              "result": "Succeeded"}}}))
    _apply_drill(cluster, namespace, "nightly-check")


def _apply_drill(cluster: ClusterHandle, namespace: str, name: str) -> None:
    """A DRDrill of policy "nightly" that runs once."""
    cluster.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-",
                    input=json.dumps({
                        "apiVersion": API, "kind": "DRDrill",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": {"tenantRef": {"name": "drilled"},
                                 "backupPolicyRef": {"name": "nightly"},
                                 "backup": {"source": "Latest"}, "once": True,
                                 "sandbox": {"ttlSeconds": 900}}}))


class Sandboxes:
    """The sandboxes a test's runs made, deleted at its end (unless already going)."""

    def __init__(self, cluster: ClusterHandle) -> None:
        self.cluster, self.made = cluster, list[str]()

    def of(self, drill_body: dict[str, Any]) -> str:
        """The active run's sandbox, to be deleted at the end."""
        sandbox = str(drill_body["status"]["activeRun"]["sandboxNamespace"])
        self.made.append(sandbox)
        return sandbox


@pytest.fixture
def sandboxes(cluster: ClusterHandle) -> Iterator[Sandboxes]:
    made = Sandboxes(cluster)
    yield made
    for sandbox in made.made:
        if not _deleted(cluster, sandbox):
            client.CoreV1Api(cluster.api).delete_namespace(
                sandbox, propagation_policy="Background")


def test_a_run_makes_its_sandbox_unread_and_keeps_its_scratch_database(
        cluster: ClusterHandle, namespace: str, kube_as_operator: OperatorIdentity,
        sandboxes: Sandboxes) -> None:
    _drill_with_a_backup(cluster, namespace)
    local = cluster.local
    # The audit log where there is one; else the API server's counters.
    mark = audit.mark(local.audit_log) if local is not None else 0
    before = request_totals(cluster) if local is None else Counter()
    drill.reconcile(_drill(cluster, namespace))
    after = request_totals(cluster) if local is None else Counter()

    body = _drill(cluster, namespace)
    sandbox = sandboxes.of(body)
    made = _scratch(cluster, sandbox)
    assert made.metadata.generation == 1
    core = client.CoreV1Api(cluster.api)
    assert core.read_namespaced_service_account(builders.RUNNER_ACCOUNT, sandbox)
    assert core.read_namespaced_config_map(builders.CHECKS_CONFIG, sandbox)
    # Made, not read: a GET of any of it would only have delayed the pod.
    if local is not None:
        # The operator's own GETs, by the audit log. The API server's counters
        # also count other clients' (the namespace controller's, deleting
        # earlier tests' namespaces: three GETs on a slow day).
        # (The tenant's namespace is read, for its placement: not the sandbox's.)
        asked = [str(r) for r in audit.reads_since(local.audit_log, mark,
                                                   kube_as_operator.username)
                 if r.verb == "get" and r.resource in SANDBOX_RESOURCES
                 and r.namespace == sandbox]
        assert asked == [], asked
        # And the log does attribute this reconcile's requests to that user.
        written = audit.writes_since(local.audit_log, mark, kube_as_operator.username)
        assert {"namespaces", "statefulsets"} <= {r.resource for r in written}, written
    else:
        reads = {resource: (after - before)[("GET", resource, "")]
                 for resource in SANDBOX_RESOURCES}
        assert reads == dict.fromkeys(SANDBOX_RESOURCES, 0), reads

    # The drill's sandbox settings change while the run lasts: the next pass
    # keeps the scratch database (and so its pod and the restore in it).
    cluster.kubectl("patch", "drdrills.stackforge.io", "nightly-check", "-n", namespace,
                    "--type=merge", "-p", json.dumps({"spec": {"sandbox": {
                        "resources": {"requests": {"cpu": "250m"}}}}}))
    changed = _drill(cluster, namespace)
    assert changed["status"]["activeRun"]["sandboxNamespace"] == sandbox
    drill.reconcile(changed)
    kept = _scratch(cluster, sandbox)
    assert kept.metadata.generation == 1
    assert kept.metadata.uid == made.metadata.uid
    [container] = kept.spec.template.spec.containers
    assert container.resources.requests is None, container.resources


def test_while_its_job_works_a_run_reads_the_job_alone_and_looks_over_the_sandbox_seldom(
        cluster: ClusterHandle, namespace: str, monkeypatch: pytest.MonkeyPatch,
        sandboxes: Sandboxes, kube_as_operator: OperatorIdentity) -> None:
    """A restore can take hours: a pass every two seconds that read and compared the
    whole sandbox was some twenty requests each. Between look-overs (every
    REPAIR_SECONDS) a pass reads the Job; a look-over still puts back what is gone."""
    _drill_with_a_backup(cluster, namespace)
    drill.reconcile(_drill(cluster, namespace))  # the sandbox
    sandbox = sandboxes.of(_drill(cluster, namespace))
    # A dump's Job starts once the scratch database is ready (kwok's pods are).
    tenants.eventually(lambda: (_scratch(cluster, sandbox).status.ready_replicas or 0) >= 1,
                       timeout=60, interval=0.5)
    drill.reconcile(_drill(cluster, namespace))  # the Job, after a look-over
    jobs = client.BatchV1Api(cluster.api)
    assert jobs.read_namespaced_job(builders.JOB, sandbox)

    local = cluster.local
    mark = audit.mark(local.audit_log) if local is not None else 0
    before = request_totals(cluster)
    for _ in range(3):
        drill.reconcile(_drill(cluster, namespace))
    if local is not None:
        # The operator's own reads of the sandbox's objects, by the audit log (the
        # tenant's namespace is read too, for its placement: the operator's watch
        # cache answers that one).
        asked = Counter(r.resource for r in audit.reads_since(
            local.audit_log, mark, kube_as_operator.username)
            if r.verb == "get" and r.namespace == sandbox)
        reads = {resource: asked[resource] for resource in SANDBOX_RESOURCES}
    else:
        read = request_totals(cluster) - before
        reads = {resource: read[("GET", resource, "")] for resource in SANDBOX_RESOURCES}
        reads["namespaces"] -= 3  # the tenant's, for its placement
    assert reads == {**dict.fromkeys(SANDBOX_RESOURCES, 0), "jobs": 3}, reads
    assert _drill(cluster, namespace)["status"]["activeRun"]["step"] == "Restoring"

    # Due again (at once, here): the look-over reads the sandbox and puts back
    # what someone deleted.
    core = client.CoreV1Api(cluster.api)
    core.delete_namespaced_config_map(builders.CHECKS_CONFIG, sandbox)
    monkeypatch.setattr(drill, "REPAIR_SECONDS", 0.0)
    drill.reconcile(_drill(cluster, namespace))
    assert core.read_namespaced_config_map(builders.CHECKS_CONFIG, sandbox)


def test_a_first_pass_reads_each_of_the_policys_secrets_once(
        cluster: ClusterHandle, namespace: str, sandboxes: Sandboxes) -> None:
    """The policy's S3 keys and CA are checked, then copied into the new sandbox:
    read once each (kube.one_read_per_secret), not once per use: every request
    of that pass comes before the scratch pod's start."""
    core = client.CoreV1Api(cluster.api)
    put_secret(cluster, namespace, "acme-s3", S3_KEYS)
    put_secret(cluster, namespace, "s3-ca", {"ca.crt": FAKE_CA_PEM})
    _drill_with_a_backup(cluster, namespace, storage={
        "endpoint": "https://10.1.2.3:9000", "forcePathStyle": True,
        "credentialsSecretRef": {"name": "acme-s3"}, "endpointCA": {"name": "s3-ca"}})
    before = request_totals(cluster)
    drill.reconcile(_drill(cluster, namespace))
    read = request_totals(cluster) - before
    sandbox = sandboxes.of(_drill(cluster, namespace))
    # The copies were made from what was read.
    copied = core.read_namespaced_secret(builders.S3_CA_SECRET, sandbox)
    assert copied.data
    assert read[("GET", "secrets", "")] == 2, read[("GET", "secrets", "")]
    # Told after the sandbox is made (not before: RTO), still told.
    [started] = core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=nightly-check,reason=DrillStarted",
    ).items
    assert started.message is not None and sandbox in started.message, started.message


def _started_ago(cluster: ClusterHandle, namespace: str, seconds: float) -> None:
    """Move the active run's start back, as if that long had gone by."""
    started = (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.kubectl("patch", "drdrills.stackforge.io", "nightly-check", "-n", namespace,
                    "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"activeRun": {"startTime": started}}}))


def _deleted(cluster: ClusterHandle, name: str) -> bool:
    try:
        found = client.CoreV1Api(cluster.api).read_namespace(name)
    except client.ApiException as error:
        return bool(error.status == 404)
    return found.metadata is not None and found.metadata.deletion_timestamp is not None


RUNNER_SAID = "restored 20261206T020000Z-a1b2c3; every check passed"


def _runner_passed(cluster: ClusterHandle, sandbox: str) -> None:
    """The run's runner pod ends saying "Passed" (kwok's own pod of the Job never ends)."""
    kwok_jobs.runner_said(cluster, sandbox, builders.JOB, "drill",
                          {"verdict": "Passed", "message": RUNNER_SAID})


def _run_with_its_job(cluster: ClusterHandle, namespace: str, sandboxes: Sandboxes) -> str:
    """Drill "nightly-check"'s run up to its Job (its scratch database Ready); its sandbox."""
    _drill_with_a_backup(cluster, namespace)
    drill.reconcile(_drill(cluster, namespace))  # the sandbox
    sandbox = sandboxes.of(_drill(cluster, namespace))
    tenants.eventually(lambda: (_scratch(cluster, sandbox).status.ready_replicas or 0) >= 1,
                       timeout=60, interval=0.5)
    drill.reconcile(_drill(cluster, namespace))  # the Job
    return sandbox


def test_a_run_whose_policy_goes_away_ends_at_its_ttl_with_its_sandbox(
        cluster: ClusterHandle, namespace: str, kube_as_operator: OperatorIdentity,
        sandboxes: Sandboxes) -> None:
    """The sandbox holds a copy of the tenant's data and the bucket's keys: a run
    stalled on a reference must not keep it past the TTL (it was kept for ever)."""
    _drill_with_a_backup(cluster, namespace)
    drill.reconcile(_drill(cluster, namespace))
    sandbox = sandboxes.of(_drill(cluster, namespace))
    cluster.kubectl("delete", "backuppolicies.stackforge.io", "nightly", "-n", namespace)

    # Within its TTL the run is kept: a reference may come back.
    drill.reconcile(_drill(cluster, namespace))
    stalled = _drill(cluster, namespace)
    assert stalled["status"]["activeRun"]["sandboxNamespace"] == sandbox
    found = tenants.condition(stalled, "Stalled") or {}
    assert (found.get("status"), found.get("reason")) == ("True", "BackupPolicyNotFound")
    assert not _deleted(cluster, sandbox)

    _started_ago(cluster, namespace, 901)  # ttlSeconds 900
    drill.reconcile(_drill(cluster, namespace))
    ended = _drill(cluster, namespace)["status"]
    assert ended.get("activeRun") is None
    result = ended["lastResult"]
    assert (result["verdict"], result["reason"]) == ("Failed", "Timeout")
    assert "BackupPolicy nightly must exist" in result["message"], result["message"]
    assert _deleted(cluster, sandbox)
    found = tenants.condition(_drill(cluster, namespace), "Stalled") or {}
    assert found.get("reason") == "BackupPolicyNotFound"


def test_a_job_that_ended_gives_its_verdict_when_read_after_the_ttl(
        cluster: ClusterHandle, namespace: str, kube_as_operator: OperatorIdentity,
        sandboxes: Sandboxes) -> None:
    """The operator was away (a restart, a leadership move) until after the run's
    TTL: the Job's end is the run's verdict, not a Timeout."""
    sandbox = _run_with_its_job(cluster, namespace, sandboxes)
    # The runner says its verdict as it ends, the Job ends (as its controller
    # records a success), then the TTL passes.
    _runner_passed(cluster, sandbox)
    kwok_jobs.record_success(cluster, sandbox, builders.JOB)
    _started_ago(cluster, namespace, 901)
    drill.reconcile(_drill(cluster, namespace))
    ended = _drill(cluster, namespace)["status"]
    assert ended.get("activeRun") is None
    # The runner's verdict, not the TTL's Timeout.
    assert ended["lastResult"]["verdict"] == "Passed", ended["lastResult"]
    assert ended["lastResult"]["message"] == RUNNER_SAID, ended["lastResult"]
    # The sandbox goes once the verdict is written (before it, a failed write
    # had the next pass make the whole sandbox again).
    assert _deleted(cluster, sandbox)


def test_a_drills_sweep_keeps_another_drills_expired_run_for_its_verdict(
        cluster: ClusterHandle, namespace: str, kube_as_operator: OperatorIdentity,
        sandboxes: Sandboxes) -> None:
    """Two drills of a namespace, the operator away across one's TTL: the other's
    sweep deleted that run's sandbox first, its ended Job with it, and the run
    was recorded lost (Timeout) instead of its verdict."""
    _drill_with_a_backup(cluster, namespace)
    drill.reconcile(_drill(cluster, namespace))
    theirs = sandboxes.of(_drill(cluster, namespace))
    # Its sandbox past the TTL, its drill not reconciled since.
    cluster.kubectl("annotate", "--overwrite", "namespace", theirs,
                    f"{builders.EXPIRES_ANNOTATION}=2026-01-01T00:00:00Z")
    _apply_drill(cluster, namespace, "other-check")

    drill.reconcile(_drill(cluster, namespace, "other-check"))

    sandboxes.of(_drill(cluster, namespace, "other-check"))
    assert not _deleted(cluster, theirs)
    # Its own drill still deletes it once its run is over (here: past the TTL).
    _started_ago(cluster, namespace, 901)
    drill.reconcile(_drill(cluster, namespace))
    assert _drill(cluster, namespace)["status"].get("activeRun") is None
    assert _deleted(cluster, theirs)


def test_a_job_that_ended_gives_its_verdict_though_the_policy_went(
        cluster: ClusterHandle, namespace: str, kube_as_operator: OperatorIdentity,
        sandboxes: Sandboxes) -> None:
    """A run stalled on a reference (its policy deleted, a Secret recreated by a
    rotation) never read its ended Job: past the TTL it was recorded lost."""
    sandbox = _run_with_its_job(cluster, namespace, sandboxes)
    _runner_passed(cluster, sandbox)
    kwok_jobs.record_success(cluster, sandbox, builders.JOB)
    cluster.kubectl("delete", "backuppolicies.stackforge.io", "nightly", "-n", namespace)

    drill.reconcile(_drill(cluster, namespace))

    ended = _drill(cluster, namespace)["status"]
    assert ended.get("activeRun") is None
    # The runner's verdict, at once.
    assert ended["lastResult"]["verdict"] == "Passed", ended["lastResult"]
    assert ended["lastResult"]["message"] == RUNNER_SAID, ended["lastResult"]
    found = tenants.condition(_drill(cluster, namespace), "Stalled") or {}
    assert found.get("reason") == "BackupPolicyNotFound"


def test_a_deleted_drills_sandboxes_are_reaped_and_a_live_drills_kept(
        cluster: ClusterHandle, namespace: str, sandboxes: Sandboxes) -> None:
    """A sandbox is a Namespace: no garbage collection takes it with its drill.
    It went only when another drill of the namespace swept it after its TTL;
    with none, never."""
    _drill_with_a_backup(cluster, namespace)
    _apply_drill(cluster, namespace, "other-check")
    drill.reconcile(_drill(cluster, namespace))
    drill.reconcile(_drill(cluster, namespace, "other-check"))
    first = _drill(cluster, namespace)
    doomed = sandboxes.of(first)
    kept = sandboxes.of(_drill(cluster, namespace, "other-check"))
    made = client.CoreV1Api(cluster.api).read_namespace(doomed).metadata
    assert made is not None and made.labels is not None
    assert made.labels[builders.DRILL_UID_LABEL] == first["metadata"]["uid"]
    assert drill_orphans.reap() == []  # both drills are there

    # Deleted and made again under its name: another drill, not the run's.
    cluster.kubectl("delete", "drdrills.stackforge.io", "nightly-check", "-n", namespace)
    _apply_drill(cluster, namespace, "nightly-check")
    assert drill_orphans.reap() == [doomed]
    assert _deleted(cluster, doomed) and not _deleted(cluster, kept)

    # On its deletion's watch event, the operator asks for the drill's own.
    cluster.kubectl("delete", "drdrills.stackforge.io", "other-check", "-n", namespace)
    assert drill_orphans.reap(namespace, "other-check") == [kept]
    assert _deleted(cluster, kept)


def test_the_operator_deletes_a_drills_sandbox_with_it_and_after_it_was_away(
        cluster: ClusterHandle, namespace: str, kube_as_operator: OperatorIdentity,
        sandboxes: Sandboxes, tmp_path: Path) -> None:
    """A drill deleted while no operator ran: its sandbox goes when one starts.
    One deleted while the operator runs: at once, not at the next periodic pass
    (STACKFORGE_DRILL_ORPHAN_SWEEP_SECONDS, 600 s)."""
    _drill_with_a_backup(cluster, namespace)
    drill.reconcile(_drill(cluster, namespace))
    away = sandboxes.of(_drill(cluster, namespace))
    cluster.kubectl("delete", "drdrills.stackforge.io", "nightly-check", "-n", namespace)
    assert not _deleted(cluster, away)

    operator = OperatorProcess(kube_as_operator.kubeconfig, tmp_path / "operator.log")
    operator.start()
    try:
        tenants.eventually(lambda: _deleted(cluster, away), timeout=30, interval=0.5)
        _apply_drill(cluster, namespace, "other-check")
        running = tenants.eventually(lambda: (_drill(cluster, namespace, "other-check").get(
            "status") or {}).get("activeRun", {}).get("sandboxNamespace"), timeout=60)
        sandboxes.made.append(running)
        tenants.eventually(lambda: not _deleted(cluster, running), timeout=30)
        cluster.kubectl("delete", "drdrills.stackforge.io", "other-check", "-n", namespace)
        tenants.eventually(lambda: _deleted(cluster, running), timeout=30, interval=0.5)
    finally:
        operator.stop()


def test_a_drill_whose_schedule_never_fires_is_stalled_before_its_first_run(
        cluster: ClusterHandle, namespace: str, sandboxes: Sandboxes) -> None:
    """The CRD admits 30 February (and an unknown zone of the right spelling). The
    first run went ahead, and every pass after it raised: no further drill, the
    status still saying Ready."""
    _drill_with_a_backup(cluster, namespace)
    cluster.kubectl("patch", "drdrills.stackforge.io", "nightly-check", "-n", namespace,
                    "--type=merge", "-p", json.dumps({"spec": {
                        "once": False, "schedule": "0 2 30 2 *"}}))
    drill.reconcile(_drill(cluster, namespace))
    body = _drill(cluster, namespace)
    assert not (body["status"].get("activeRun") or {}), body["status"]
    [stalled] = [c for c in body["status"]["conditions"] if c["type"] == "Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSchedule"), stalled
    assert "'0 2 30 2 *' never fires" in stalled["message"]


def test_a_drill_on_a_storage_class_that_retains_volumes_is_stalled_before_any_run(
        cluster: ClusterHandle, namespace: str, kube_as_operator: OperatorIdentity,
        sandboxes: Sandboxes) -> None:
    """The sandbox's claim goes with it, but a Retain class keeps the volume, with
    the whole restored copy of the tenant's data, after every run."""
    retaining = f"retain-{namespace}"[:63]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": retaining}, "provisioner": "example.com/none",
        "reclaimPolicy": "Retain"}))
    try:
        _drill_with_a_backup(cluster, namespace)
        cluster.kubectl("patch", "drdrills.stackforge.io", "nightly-check", "-n", namespace,
                        "--type=merge", "-p", json.dumps({"spec": {"sandbox": {
                            "storageClassName": retaining}}}))
        drill.reconcile(_drill(cluster, namespace))
        body = _drill(cluster, namespace)
        assert not (body["status"].get("activeRun") or {}), body["status"]
        found = tenants.condition(body, "Stalled") or {}
        assert (found.get("status"), found.get("reason")) == (
            "True", "SandboxVolumesRetained"), found
        assert "reclaimPolicy Retain" in str(found.get("message")), found
    finally:
        cluster.kubectl("delete", "storageclass", retaining, "--ignore-not-found")


def test_a_drill_deleted_while_its_first_sandbox_is_made_leaves_none(
        cluster: ClusterHandle, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its deletion's sweep looked before the sandbox existed: the restored copy
    of the tenant's data stayed until the periodic sweep, ten minutes on."""
    _drill_with_a_backup(cluster, namespace)
    made = drill._make

    def deleted_meanwhile(children: list[dict[str, Any]]) -> dict[str, Any]:
        # The deletion, and its sweep, come after the run's start is recorded
        # and before its sandbox exists.
        cluster.kubectl("delete", "drdrills.stackforge.io", "nightly-check", "-n", namespace)
        sandbox = children[0]["metadata"]["name"]
        assert drill_orphans.reap(namespace, "nightly-check") == []
        live = made(children)
        assert not _deleted(cluster, sandbox)
        return live

    monkeypatch.setattr(drill, "_make", deleted_meanwhile)
    outcome = drill.reconcile(_drill(cluster, namespace))
    assert outcome.requeue_after == drill.STALLED_SECONDS
    sandboxes = [str(s.metadata.name) for s in client.CoreV1Api(cluster.api).list_namespace(
        label_selector=f"{builders.DRILL_LABEL}=nightly-check").items if s.metadata]
    assert sandboxes and all(_deleted(cluster, sandbox) for sandbox in sandboxes), sandboxes


def test_a_sandbox_namespace_made_before_its_run_gets_nothing_of_it(
        cluster: ClusterHandle, namespace: str) -> None:
    """A sandbox's name can be foretold (the drill's uid, the schedule's second):
    where people may make namespaces, one made beforehand with its maker's
    RoleBinding was handed the bucket's keys and a restored copy of the data."""
    _drill_with_a_backup(cluster, namespace)
    body = _drill(cluster, namespace)
    # The run will begin in the second after next (its id is that second)...
    second = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    foretold = builders.sandbox_name("nightly-check", second.strftime("%Y%m%dT%H%M%SZ"),
                                     body["metadata"]["uid"])
    tenants.ensure_namespace(cluster, foretold)  # ...and its namespace is made before
    try:
        time.sleep(max(0.0, (second - datetime.now(UTC)).total_seconds()) + 0.05)
        drill.reconcile(body)
        ended = _drill(cluster, namespace)
        result = ended["status"].get("lastResult") or {}
        assert (result.get("verdict"), result.get("reason")) == ("Failed", "SandboxTaken"), \
            ended["status"]
        core = client.CoreV1Api(cluster.api)
        assert core.list_namespaced_secret(foretold).items == []
        assert client.AppsV1Api(cluster.api).list_namespaced_stateful_set(foretold).items == []
    finally:
        cluster.kubectl("delete", "namespace", foretold, "--wait=false", check=False)


def test_a_run_starts_only_over_the_status_its_pass_read(
        cluster: ClusterHandle, namespace: str, sandboxes: Sandboxes) -> None:
    """Two replicas briefly both active (kopf's peering is no lock) each started a
    run from what it had read: the second write replaced the first run, whose
    sandbox (a copy of the data, and the bucket's keys) was named by nothing
    until its TTL."""
    _drill_with_a_backup(cluster, namespace)
    stale = _drill(cluster, namespace)
    # Another writer moved the drill on since (here a label; there, its run).
    cluster.kubectl("label", "drdrills.stackforge.io", "nightly-check", "-n", namespace,
                    "moved=yes")
    with pytest.raises(kopf.TemporaryError):
        drill.reconcile(stale)
    assert not (_drill(cluster, namespace).get("status") or {}).get("activeRun")
    made = client.CoreV1Api(cluster.api).list_namespace(
        label_selector=f"{builders.DRILL_UID_LABEL}={stale['metadata']['uid']}").items
    assert [m.metadata.name for m in made if m.metadata] == []
    # From what is there now, it starts.
    drill.reconcile(_drill(cluster, namespace))
    assert sandboxes.of(_drill(cluster, namespace))


def test_an_expired_sandbox_goes_though_its_drills_spec_cannot_be_read(
        cluster: ClusterHandle, namespace: str, sandboxes: Sandboxes) -> None:
    """A spec the CRD admits and the models refuse (an operator rolled back, say)
    stalled the drill before any sweep, and every sweep spares the sandbox a run
    names: the copy of the data and the bucket's keys stayed until it was mended."""
    _drill_with_a_backup(cluster, namespace)
    drill.reconcile(_drill(cluster, namespace))
    body = _drill(cluster, namespace)
    sandbox = sandboxes.of(body)
    core = client.CoreV1Api(cluster.api)
    unreadable = {**body, "spec": {**body["spec"], "sandbox": {"ttlSeconds": "a day"}}}
    drill.reconcile(unreadable)  # not expired yet: kept
    assert not _deleted(cluster, sandbox)
    stalled = tenants.condition(_drill(cluster, namespace), "Stalled") or {}
    assert stalled.get("reason") == "InvalidSpec", stalled
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    core.patch_namespace(sandbox, {"metadata": {"annotations": {
        builders.EXPIRES_ANNOTATION: past}}})
    drill.reconcile(unreadable)
    assert _deleted(cluster, sandbox)
