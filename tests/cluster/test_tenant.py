"""Tenant provisioning on the real control plane, with the operator as a subprocess."""

from __future__ import annotations

import base64
import json
import math
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from kubernetes import client

from stackforge_operator import config
from stackforge_operator.builders import postgres
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import audit, tenants
from tests.support.clusters import ClusterHandle
from tests.support.metrics import request_totals, writes_between
from tests.support.objects import metadata_of, name_of, spec_of, uid_of
from tests.support.operator_identity import OperatorIdentity
from tests.support.tenants import eventually

OPERATOR_WRITES = frozenset({
    "stackforgetenants", "namespaces", "secrets", "configmaps", "services", "resourcequotas",
    "limitranges", "deployments", "statefulsets", "networkpolicies", "ingresses",
    "poddisruptionbudgets", "horizontalpodautoscalers", "events",
})
COMPONENT_CONDITIONS = ("PostgresReady", "PoolerReady", "RedisReady", "KafkaReady", "KongReady",
                        "ConsulReady", "AppsReady")


def _kinds(cluster: ClusterHandle, namespace: str, kinds: str) -> set[str]:
    out = cluster.kubectl("get", kinds, "-n", namespace, "-o", "name").stdout
    return set(out.split())


def test_example_tenant_becomes_ready(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    cleanup.append("acme")
    tenants.apply(cluster, tenants.example_tenant("acme"))
    # The example's notification channels name this Secret, in the tenant's namespace.
    tenants.example_alert_secret(cluster, "tenant-acme")

    waited = cluster.kubectl("wait", "--for=condition=Ready", "--timeout=120s", "sft/acme",
                             "-n", "tenant-acme", timeout=150)
    assert "condition met" in waited.stdout
    tenant = tenants.get(cluster, "acme")
    assert tenant is not None
    for type_ in COMPONENT_CONDITIONS:
        found = tenants.condition(tenant, type_)
        assert found is not None and found["status"] == "True", (type_, found)
    assert tenants.condition(tenant, "Reconciling")["status"] == "False"  # type: ignore[index]
    assert tenants.condition(tenant, "Stalled")["status"] == "False"  # type: ignore[index]
    status = tenant["status"]
    assert status["observedGeneration"] == tenant["metadata"]["generation"]
    assert status["componentsReady"] == "9/9"
    assert status["cost"]["priceMonthly"] == "393.15"
    assert status["replicas"] == 2 and status["readyReplicas"] == 2
    assert status["selector"] == "app.kubernetes.io/component=kong,stackforge.io/tenant=acme"

    namespace = metadata_of(client.CoreV1Api(cluster.api).read_namespace("tenant-acme"))
    assert (namespace.labels or {})["pod-security.kubernetes.io/enforce"] == "restricted"
    assert (namespace.labels or {})["stackforge.io/tenant"] == "acme"
    # The tenant lives in the namespace; it labels it but does not own it.
    assert not namespace.owner_references
    children = _kinds(cluster, "tenant-acme", "statefulsets,deployments")
    assert children == {
        "statefulset.apps/postgres", "statefulset.apps/postgres-replica", "statefulset.apps/redis",
        "statefulset.apps/kafka", "statefulset.apps/consul", "deployment.apps/kong",
        "deployment.apps/pooler", "deployment.apps/api", "deployment.apps/web",
    }
    shown = cluster.kubectl("get", "sft", "acme", "-n", "tenant-acme").stdout.splitlines()
    shown = shown[1].split()
    assert shown[:5] == ["acme", "Growth", "True", "AllComponentsReady", "9/9"]

    # The scheduler spread each workload's pods over the three kwok nodes, and
    # the read replicas away from their primary (preferred anti-affinity).
    placed: dict[str, list[str]] = {}
    for pod in client.CoreV1Api(cluster.api).list_namespaced_pod("tenant-acme").items:
        labels = metadata_of(pod).labels or {}
        workload = labels.get("stackforge.io/app") or labels.get("app.kubernetes.io/component")
        if workload is not None:
            placed.setdefault(workload, []).append(str(spec_of(pod).node_name))
    assert any(len(nodes) > 1 for nodes in placed.values()), placed
    for workload, nodes in placed.items():
        assert len(set(nodes)) == min(len(nodes), 3), (workload, placed)
    assert not set(placed["postgres"]) & set(placed.get("postgres-replica", [])), placed


def test_missing_secret_stalls_with_a_clear_reason_then_recovers(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    cleanup.append("stalls")
    manifest = tenants.small_tenant("stalls", notifications={
        "slack": {"webhookUrlSecretRef": {"name": "alerts", "key": "url"}}})
    tenants.apply(cluster, manifest)
    tenant = tenants.wait_condition(cluster, "stalls", "Stalled", "True")
    stalled = tenants.condition(tenant, "Stalled")
    assert stalled is not None
    assert stalled["reason"] == "MissingSecret"
    assert "spec.notifications.slack.webhookUrlSecretRef" in stalled["message"]
    assert "tenant-stalls/alerts does not exist" in stalled["message"]
    assert tenants.condition(tenant, "Ready")["status"] == "False"  # type: ignore[index]
    assert tenants.condition(tenant, "Reconciling")["status"] == "False"  # type: ignore[index]

    tenants.put_secret(cluster, "tenant-stalls", "alerts", {"url": "http://127.0.0.1:9/x"})
    tenants.wait_condition(cluster, "stalls", "Ready", "True", timeout=60)


def test_a_suspend_window_whose_date_never_comes_stalls_the_tenant_saying_which(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    """The CRD's grammar admits 30 February; the tenant's every pass raised before
    it wrote a status, retried unseen, the tenant frozen as it was."""
    cleanup.append("feb30")
    weeknights = {"start": "0 20 * * 1-5", "end": "0 7 * * 1-5"}
    tenants.apply(cluster, tenants.small_tenant(
        "feb30", suspendWindows=[weeknights, {"start": "0 20 30 2 *", "end": "0 7 * * *"}]))
    tenant = tenants.wait_condition(cluster, "feb30", "Stalled", "True")
    stalled = tenants.condition(tenant, "Stalled") or {}
    assert stalled["reason"] == "InvalidSchedule", stalled
    assert stalled["message"].startswith(
        "spec.suspendWindows[1].start: schedule '0 20 30 2 *' never fires"), stalled

    tenants.apply(cluster, tenants.small_tenant("feb30", suspendWindows=[weeknights]))
    tenants.wait_condition(cluster, "feb30", "Stalled", "False", timeout=60)


def test_a_kafka_count_refused_keeps_the_running_clusters_disruption_budget(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    """Without kafka.replicas the Growth tier's one node would apply: the operator
    refuses it and keeps the three that run, but their budget followed the refused
    count (none for one node) and was pruned."""
    cleanup.append("voters")
    three = tenants.small_tenant("voters", tier="Growth", components={
        "apps": [], "kafka": {"enabled": True, "replicas": 3}})
    tenants.apply(cluster, three)
    tenants.wait_condition(cluster, "voters", "Ready", "True")
    policy = client.PolicyV1Api(cluster.api)
    assert spec_of(policy.read_namespaced_pod_disruption_budget(
        "kafka", "tenant-voters")).max_unavailable == 1
    del three["spec"]["components"]["kafka"]["replicas"]
    tenants.apply(cluster, three)  # the same field manager: the field goes
    eventually(lambda: (tenants.condition(tenants.get(cluster, "voters"), "Ready") or {})
               .get("reason") == "KafkaVotersFixed", timeout=60)
    time.sleep(1)  # a pass more
    assert spec_of(policy.read_namespaced_pod_disruption_budget(
        "kafka", "tenant-voters")).max_unavailable == 1


def test_noop_resync_makes_zero_write_requests_and_reads_nothing_per_tenant(
    cluster: ClusterHandle, operator: OperatorProcess,
    operator_identity_installed: OperatorIdentity, cleanup: list[str],
) -> None:
    cleanup.append("quiet")
    # Tenants of earlier tests still being torn down would write meanwhile.
    tenants.wait_for_no_terminating_namespace(cluster)
    local = cluster.local
    provisioning = audit.mark(local.audit_log) if local is not None else 0
    tenants.apply(cluster, tenants.small_tenant("quiet"))
    tenants.wait_condition(cluster, "quiet", "Ready", "True")
    time.sleep(4)  # let the last status write's watch event come back around

    resync = audit.mark(local.audit_log) if local is not None else 0
    before = request_totals(cluster)
    looks = tenants.looks_at(operator, "tenant-quiet/quiet")
    time.sleep(5)  # more than a 3-second resync
    # Settled (#18): no resync timer runs at all, so it is not even looked at.
    assert tenants.looks_at(operator, "tenant-quiet/quiet") == looks
    # What its inputs token counts wakes it: here a Secret of the customer's in its
    # namespace, made and changed three times; each change is one full reconcile.
    core = client.CoreV1Api(cluster.api)
    reconciled = _tenant_reconciles(operator)
    for value in ("one", "two", "three"):
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": "unrelated", "namespace": "tenant-quiet"},
                  "stringData": {"v": value}}
        cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))

        def looked_again(seen: int = looks) -> bool:
            return tenants.looks_at(operator, "tenant-quiet/quiet") > seen

        eventually(looked_again, timeout=10)
        looks = tenants.looks_at(operator, "tenant-quiet/quiet")
    # Full reconciles, not skips (other tenants of the module may add to the count).
    assert _tenant_reconciles(operator) - reconciled >= 3
    core.delete_namespaced_secret("unrelated", "tenant-quiet")
    time.sleep(2)
    after = request_totals(cluster)
    if local is not None:
        # Attributed by the API server itself: controllers aggregating Events or
        # re-creating ConfigMaps in other namespaces are not the operator.
        user = operator_identity_installed.username
        made = audit.writes_since(local.audit_log, provisioning, user)
        # The log does see the operator: provisioning the tenant was writes...
        assert any(w.namespace == "tenant-quiet" for w in made), made
        assert [w.described() for w in audit.writes_since(local.audit_log, resync, user)] == []
        # (Its reads: none need be left even while provisioning, every kind it
        # reads being cached, the metrics API included: not asserted either way.)
        idle = audit.reads_since(local.audit_log, resync, user)
        # No GET or LIST of the tenant's objects, and no cluster-wide LIST of tenants
        # (the name check), in those three reconciles: each was answered from memory.
        per_tenant = [str(r) for r in idle if r.namespace == "tenant-quiet" or r.resource in (
            "stackforgetenants", "backuppolicies", "drdrills", "namespaces")]
        assert per_tenant == [], per_tenant
        # No APIService serves the metrics API here, which the watch of APIServices
        # knows: the metrics API is never asked.
        probes = [str(r) for r in idle if r.api_group == "metrics.k8s.io"]
        assert probes == [], probes
        # What is left is per process too: whether the add-ons' CRDs are installed.
        assert {r.resource for r in idle} <= {"customresourcedefinitions"}, idle
    else:
        # Everything the operator ever writes; controllers and kwok write other
        # resources (node heartbeats, leases, endpoints) on their own schedule.
        assert writes_between(before, after, resources=OPERATOR_WRITES) == {}
    # One Event for the whole provisioning (#18), not one per condition.
    events = client.CoreV1Api(cluster.api).list_namespaced_event(
        "tenant-quiet", field_selector="involvedObject.name=quiet,"
                                       "involvedObject.kind=StackForgeTenant").items
    assert [(e.type, e.reason, e.count or 1) for e in events] == [
        ("Normal", "AllComponentsReady", 1)], [(e.reason, e.message) for e in events]


def _tenant_sample(operator: OperatorProcess, series: str) -> float:
    text = httpx.get(operator.metrics_url, timeout=5).text
    prefix = f'{series}{{kind="StackForgeTenant"}} '
    return sum(float(line[len(prefix):]) for line in text.splitlines()
               if line.startswith(prefix))


def _tenant_reconciles(operator: OperatorProcess) -> float:
    return _tenant_sample(operator, "stackforge_reconcile_duration_seconds_count")


METRICS_API_SERVICE = {
    "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
    "metadata": {"name": "v1beta1.metrics.k8s.io"},
    # A metrics-server that is not there: the API server answers 503 for it.
    "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
             "versionPriority": 100, "insecureSkipTLSVerify": True,
             "service": {"namespace": "kube-system", "name": "metrics-server", "port": 443}}}


def test_a_metrics_api_registered_later_wakes_a_settled_tenant_to_measure(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    cleanup.append("measured")
    tenants.apply(cluster, tenants.small_tenant("measured"))
    tenants.wait_condition(cluster, "measured", "Ready", "True")

    def unmeasured() -> str:
        found = tenants.get(cluster, "measured") or {}
        return str(((found.get("status") or {}).get("usage") or {}).get("unmeasured") or "")

    key = "tenant-measured/measured"

    def settled() -> bool:
        """Not looked at for 4 s (more than a 3-second resync)."""
        seen = tenants.looks_at(operator, key)
        time.sleep(4)
        return tenants.looks_at(operator, key) == seen

    eventually(lambda: "serves no metrics API" in unmeasured(), timeout=30)
    eventually(settled, timeout=30)
    looks = tenants.looks_at(operator, key)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(METRICS_API_SERVICE))
    try:
        # Registered, and woken at once (not at STACKFORGE_FULL_RESYNC_SECONDS): it
        # asks the metrics API, whose missing server makes the API server answer 503.
        eventually(lambda: "the metrics API failed" in unmeasured(), timeout=20)
        # The queue logs a run once it has finished, after the status it wrote.
        eventually(lambda: tenants.looks_at(operator, key) > looks, timeout=10)
    finally:
        cluster.kubectl("delete", "apiservice", "v1beta1.metrics.k8s.io",
                        "--ignore-not-found", "--wait=true")
    # Gone again: the next wake finds no metrics API, without asking it.
    eventually(lambda: "serves no metrics API" in unmeasured(), timeout=20)


def _refusing_policy(namespace: str, reason: str = "Invalid") -> list[dict[str, Any]]:
    """An admission policy of the cluster's (as a policy engine would add) that refuses
    any Deployment named api in ``namespace``: the API server answers 422 Invalid,
    or 403 with ``reason`` Forbidden (as Gatekeeper's and Kyverno's webhooks do)."""
    name = f"refuse-api-{namespace}"
    policy = {"apiVersion": "admissionregistration.k8s.io/v1",
              "kind": "ValidatingAdmissionPolicy", "metadata": {"name": name},
              "spec": {"failurePolicy": "Fail",
                       "matchConstraints": {"resourceRules": [{
                           "apiGroups": ["apps"], "apiVersions": ["v1"],
                           "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                       "validations": [{"expression": "object.metadata.name != 'api'",
                                        "message": "no deployment may be called api here",
                                        "reason": reason}]}}
    binding = {"apiVersion": "admissionregistration.k8s.io/v1",
               "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
               "spec": {"policyName": name, "validationActions": ["Deny"],
                        "matchResources": {"namespaceSelector": {"matchLabels": {
                            "kubernetes.io/metadata.name": namespace}}}}}
    return [policy, binding]


@pytest.mark.parametrize(("reason", "status", "problem"), [
    ("Invalid", 422, "ChildRefused"),
    # A 403 was raised out of the pass: no status written, Ready stayed True.
    ("Forbidden", 403, "ChildForbidden")])
def test_a_child_the_api_server_refuses_stalls_the_tenant_saying_why_and_the_rest_is_made(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str], reason: str,
    status: int, problem: str
) -> None:
    name = f"refused-{status}"  # names are unique: a namespace goes after its test
    cleanup.append(name)
    namespace = tenants.namespace_of(name)
    tenants.ensure_namespace(cluster, namespace)
    policy, binding = _refusing_policy(namespace, reason)
    apps = client.AppsV1Api(cluster.api)

    def _ready_reason(name: str) -> str | None:
        found = tenants.condition(tenants.get(cluster, name), "Ready")
        return None if found is None else str(found.get("reason"))

    probe = {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "api", "namespace": namespace},
             "spec": {"selector": {"matchLabels": {"a": "b"}},
                      "template": {"metadata": {"labels": {"a": "b"}},
                                   "spec": {"containers": [{"name": "c", "image": "x"}]}}}}

    def refuses() -> bool:
        try:
            # Typed V1Deployment, but its validate_call takes the manifest as a dict too.
            apps.create_namespaced_deployment(namespace, probe, dry_run="All")  # type: ignore[arg-type]
        except client.ApiException as error:
            return bool(error.status == status)  # the client leaves status untyped
        return False

    cluster.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [policy, binding]}))
    try:
        eventually(refuses, timeout=30)  # the API server has loaded the policy
        tenants.apply(cluster, tenants.small_tenant(name))
        # Not retried unseen: Stalled, naming the child and the API server's answer.
        eventually(lambda: _ready_reason(name) == problem, timeout=60)
        ready = tenants.condition(tenants.get(cluster, name), "Ready") or {}
        assert ready["status"] == "False", ready
        assert "Deployment" in ready["message"] and "called api" in ready["message"], ready
        # What it could make, it made.
        assert client.CoreV1Api(cluster.api).read_namespaced_service("api", namespace)
        assert _deployment(apps, "api", namespace) is None
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy",
                        policy["metadata"]["name"], "--ignore-not-found")
    # The cluster's policy lifted: the next look makes it, and the tenant moves on.
    eventually(lambda: _deployment(apps, "api", namespace) is not None, timeout=60)
    eventually(lambda: _ready_reason(name) not in (None, problem), timeout=30)


def test_a_tenant_whose_namespace_is_deleted_makes_nothing_again(
    cluster: ClusterHandle, operator: OperatorProcess
) -> None:
    """Deleting the namespace first deletes each child, and each deletion wakes the
    tenant: it must not try to make them again in a namespace that refuses them."""
    tenants.apply(cluster, tenants.small_tenant("leaving"))
    tenants.wait_condition(cluster, "leaving", "Ready", "True")
    log = operator.process.log_path
    start = log.stat().st_size
    cluster.kubectl("delete", "namespace", "tenant-leaving", "--wait=true", timeout=120)
    eventually(lambda: tenants.get(cluster, "leaving") is None, timeout=30)
    with log.open(errors="replace") as text:
        text.seek(start)
        since = [line for line in text if "leaving" in line]
    assert any("namespace tenant-leaving is being deleted; nothing applied" in line
               for line in since), since[-20:]
    refused = [line for line in since if "forbidden" in line.lower()]
    assert refused == [], refused[:5]


def test_owned_objects_are_restored_and_foreign_annotations_kept(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    cleanup.append("drift")
    tenants.apply(cluster, tenants.small_tenant("drift"))
    tenants.wait_condition(cluster, "drift", "Ready", "True")
    ns = "tenant-drift"
    apps = client.AppsV1Api(cluster.api)
    original_uid = uid_of(apps.read_namespaced_deployment("kong", ns))

    # A deleted workload comes back.
    apps.delete_namespaced_deployment("kong", ns)
    eventually(lambda: (d := _deployment(apps, "kong", ns)) is not None
               and d.metadata.uid != original_uid)

    # A hand edit of an owned field is reverted; an annotation added by
    # someone else (Argo CD here) survives.
    patch = {
        "metadata": {"annotations": {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment"}},
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "registry.example.com/evil:6.6.6"}]}}},
    }
    cluster.kubectl("patch", "deployment", "api", "-n", ns, "--type=strategic",
                    "-p", json.dumps(patch))

    def reverted() -> bool:
        template = spec_of(apps.read_namespaced_deployment("api", ns)).template
        return spec_of(template).containers[0].image == "registry.example.com/shop/api:1.0.0"

    eventually(reverted, timeout=30)
    annotations = metadata_of(apps.read_namespaced_deployment("api", ns)).annotations or {}
    assert annotations["argocd.argoproj.io/tracking-id"] == "shop:apps/Deployment"


def _deployment(apps: client.AppsV1Api, name: str, namespace: str) -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return apps.read_namespaced_deployment(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def test_generated_credentials_never_reach_the_logs(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    cleanup.append("secretive")
    tenants.apply(cluster, tenants.small_tenant("secretive", adminAccounts=[
        {"username": "jane", "email": "jane@example.com"}]))
    tenants.wait_condition(cluster, "secretive", "Ready", "True")
    core = client.CoreV1Api(cluster.api)
    values = []
    for name in ("postgres-credentials", "redis-credentials", "admin-jane"):
        data = core.read_namespaced_secret(name, "tenant-secretive").data
        assert data is not None  # each holds its credentials
        values += [base64.b64decode(v).decode() for k, v in data.items() if k != "username"]
    assert len(values) >= 5 and all(len(v) >= 20 for v in values)
    time.sleep(4)  # a resync or two more
    log = operator.process.log_path.read_text()
    assert "tenant secretive: applied" in log  # the log does talk about it
    leaked = [v for v in values if v in log or base64.b64encode(v.encode()).decode() in log]
    assert leaked == []


def test_credentials_are_kept_across_reconciles_and_rotated_on_request(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    cleanup.append("rotate")
    tenants.apply(cluster, tenants.small_tenant("rotate"))
    tenants.wait_condition(cluster, "rotate", "Ready", "True")
    core = client.CoreV1Api(cluster.api)

    def password() -> str:
        data = core.read_namespaced_secret("postgres-credentials", "tenant-rotate").data or {}
        return str(data["password"])

    first = password()
    time.sleep(4)
    assert password() == first  # resyncs never regenerate

    cluster.kubectl("annotate", "sft", "rotate", "-n", "tenant-rotate",
                    "stackforge.io/rotate-credentials=incident-42")
    eventually(lambda: password() != first, timeout=30)
    rotated = password()
    time.sleep(4)
    assert password() == rotated  # one request, one rotation
    template = metadata_of(spec_of(client.AppsV1Api(cluster.api).read_namespaced_stateful_set(
        "postgres", "tenant-rotate")).template).annotations or {}
    assert template["stackforge.io/rotation"] == "incident-42"
    tenant = tenants.wait_condition(cluster, "rotate", "Ready", "True")
    assert tenant["status"]["credentialsRotatedAt"]

    # The annotation taken off (a GitOps clean-up): nothing restarts, the record
    # stays, and the same request set again rotates nothing.
    apps = client.AppsV1Api(cluster.api)
    generation = metadata_of(apps.read_namespaced_stateful_set(
        "postgres", "tenant-rotate")).generation
    cluster.kubectl("annotate", "sft", "rotate", "-n", "tenant-rotate",
                    "stackforge.io/rotate-credentials-")
    time.sleep(6)  # resyncs every 3 s in the tests
    cluster.kubectl("annotate", "sft", "rotate", "-n", "tenant-rotate",
                    "stackforge.io/rotate-credentials=incident-42")
    time.sleep(6)
    assert password() == rotated
    secret = metadata_of(core.read_namespaced_secret("postgres-credentials", "tenant-rotate"))
    assert (secret.annotations or {})["stackforge.io/rotation"] == "incident-42"
    assert metadata_of(apps.read_namespaced_stateful_set(
        "postgres", "tenant-rotate")).generation == generation


def test_changes_converge(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    cleanup.append("shifty")
    ns = "tenant-shifty"
    tenants.apply(cluster, tenants.small_tenant("shifty", components={
        "kafka": {"enabled": True},
        "apps": [{"name": "api", "image": "registry.example.com/shop/api:1.0.0", "port": 8080}],
    }))
    tenants.wait_condition(cluster, "shifty", "Ready", "True")
    assert "statefulset.apps/kafka" in _kinds(cluster, ns, "statefulsets")
    core, apps = client.CoreV1Api(cluster.api), client.AppsV1Api(cluster.api)
    assert (spec_of(core.read_namespaced_resource_quota("tenant-quota", ns)).hard or {})[
        "requests.cpu"] == "4"

    # A new PostgreSQL major is refused by the API server, naming the way that works
    # (the data files of one major crash-loop a server of another).
    template = spec_of(apps.read_namespaced_stateful_set("postgres", ns)).template
    image = spec_of(template).containers[0].image
    bumped = cluster.kubectl("apply", "--server-side", "-f", "-", check=False,
                             input=json.dumps(tenants.small_tenant("shifty", components={
                                 "kafka": {"enabled": True}, "postgres": {"version": 17},
                                 "apps": [{"name": "api", "port": 8080,
                                           "image": "registry.example.com/shop/api:1.0.0"}]})))
    assert bumped.returncode != 0
    assert "postgres.version cannot change on an existing tenant" in bumped.stderr
    assert "restore a backup of this one into it" in bumped.stderr

    # Tier change resizes; disabling a component removes its children.
    tenants.apply(cluster, tenants.small_tenant("shifty", tier="Growth", components={
        "kafka": {"enabled": False},
        "apps": [{"name": "api", "image": "registry.example.com/shop/api:1.0.0", "port": 8080}],
    }))
    tenants.wait_condition(cluster, "shifty", "Ready", "True")
    assert (spec_of(core.read_namespaced_resource_quota("tenant-quota", ns)).hard or {})[
        "requests.cpu"] == "8"
    eventually(lambda: "statefulset.apps/kafka" not in _kinds(cluster, ns, "statefulsets"))
    assert not any("kafka" in n for n in _kinds(cluster, ns, "services"))
    postgres = apps.read_namespaced_stateful_set("postgres", ns)
    assert spec_of(spec_of(postgres).template).containers[0].image == image
    # Growth's database volume is larger: the existing claim grows in place
    # (the StatefulSet's claim template itself is immutable).
    claim = core.read_namespaced_persistent_volume_claim("data-postgres-0", ns)
    resources = spec_of(claim).resources
    assert resources is not None
    assert (resources.requests or {})["storage"] == "50Gi"

    # Suspend scales to zero and keeps the data.
    claims_before = {name_of(c) for c in core.list_namespaced_persistent_volume_claim(ns).items}
    tenants.apply(cluster, tenants.small_tenant("shifty", tier="Growth", suspend=True,
                  components={"kafka": {"enabled": False},
                              "apps": [{"name": "api", "port": 8080,
                                        "image": "registry.example.com/shop/api:1.0.0"}]}))
    tenant = tenants.wait_condition(cluster, "shifty", "Ready", "True")
    assert tenants.condition(tenant, "Ready")["reason"] == "Suspended"  # type: ignore[index]
    assert spec_of(apps.read_namespaced_stateful_set("postgres", ns)).replicas == 0
    assert spec_of(apps.read_namespaced_deployment("kong", ns)).replicas == 0
    eventually(lambda: not core.list_namespaced_pod(ns).items)
    claims_after = {name_of(c) for c in core.list_namespaced_persistent_volume_claim(ns).items}
    assert claims_before and claims_before <= claims_after


def test_a_resumed_tenant_hands_its_autoscaled_apps_back_to_their_autoscalers(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    """Suspended, an autoscaled app's Deployment gets replicas: 0 (an HPA does not
    scale from zero); resumed, the field is left out for the HPA. Left out, it
    differed from nothing, so it was never applied: the app stayed at 0 replicas
    for good, and the tenant said Ready."""
    cleanup.append("elastic")
    ns = tenants.namespace_of("elastic")
    autoscaled = {"apps": [{"name": "api", "port": 8080,
                            "image": "registry.example.com/shop/api:1.0.0",
                            "autoscaling": {"enabled": True, "minReplicas": 2,
                                            "maxReplicas": 4}}]}
    apps = client.AppsV1Api(cluster.api)
    tenants.apply(cluster, tenants.small_tenant("elastic", suspend=True, components=autoscaled))
    tenant = tenants.wait_condition(cluster, "elastic", "Ready", "True")
    assert tenants.condition(tenant, "Ready")["reason"] == "Suspended"  # type: ignore[index]
    assert spec_of(apps.read_namespaced_deployment("api", ns)).replicas == 0

    tenants.apply(cluster, tenants.small_tenant("elastic", components=autoscaled))
    # The field released, the API server defaults it to one; the HPA takes it on.
    eventually(lambda: (spec_of(apps.read_namespaced_deployment("api", ns)).replicas or 0) >= 1,
               timeout=60)


def test_a_database_turned_off_and_on_with_more_storage_grows_its_kept_claim(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    """Turned off, the StatefulSet goes and its claim stays; turned on with more
    storage, the new StatefulSet's larger template never grew the kept claim (the
    resize looked only at a StatefulSet already there)."""
    cleanup.append("regrown")
    ns = tenants.namespace_of("regrown")
    core = client.CoreV1Api(cluster.api)

    def claim_size() -> str:
        claim = core.read_namespaced_persistent_volume_claim("data-postgres-0", ns)
        resources = spec_of(claim).resources
        assert resources is not None
        return str((resources.requests or {})["storage"])

    tenants.apply(cluster, tenants.small_tenant("regrown", components={
        "postgres": {"storage": "10Gi"}}))
    tenants.wait_condition(cluster, "regrown", "Ready", "True")
    eventually(lambda: claim_size() == "10Gi", timeout=60)
    tenants.apply(cluster, tenants.small_tenant("regrown", components={
        "postgres": {"enabled": False, "storage": "10Gi"}}))
    eventually(lambda: "statefulset.apps/postgres" not in _kinds(cluster, ns, "statefulsets"))
    tenants.apply(cluster, tenants.small_tenant("regrown", components={
        "postgres": {"storage": "20Gi"}}))
    eventually(lambda: claim_size() == "20Gi", timeout=60)


def test_isolate_cuts_everything_but_the_operator(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    cleanup.append("incident")
    ns = "tenant-incident"
    tenants.apply(cluster, tenants.small_tenant("incident"))
    tenants.wait_condition(cluster, "incident", "Ready", "True")
    assert len(_kinds(cluster, ns, "networkpolicies")) > 3

    tenants.apply(cluster, tenants.small_tenant("incident", isolate=True))
    eventually(lambda: _kinds(cluster, ns, "networkpolicies") == {
        "networkpolicy.networking.k8s.io/default-deny",
        "networkpolicy.networking.k8s.io/allow-operator"})
    policies = client.NetworkingV1Api(cluster.api)
    deny = spec_of(policies.read_namespaced_network_policy("default-deny", ns))
    assert deny.pod_selector is not None and deny.pod_selector.match_labels is None
    assert deny.policy_types is not None
    assert sorted(deny.policy_types) == ["Egress", "Ingress"]
    assert not deny.ingress and not deny.egress
    allow = spec_of(policies.read_namespaced_network_policy("allow-operator", ns))
    assert allow.ingress is not None and allow.ingress[0]._from is not None
    from_operator = allow.ingress[0]._from[0].namespace_selector
    assert from_operator is not None
    peer = from_operator.match_labels
    assert peer == {"kubernetes.io/metadata.name": "stackforge-system"}
    tenant = tenants.wait_condition(cluster, "incident", "Ready", "True")
    assert tenant["status"]["isolated"] is True

    # The primary's sidecar closes the network sessions begun before the
    # isolation settled: a moment, in its ConfigMap. The pod is touched with
    # the ConfigMap's version, which has the kubelet write the file at once.
    began = datetime.fromisoformat(
        tenants.condition(tenant, "Isolated")["lastTransitionTime"])  # type: ignore[index]
    moment = str(math.ceil(began.timestamp() + config.ISOLATION_SETTLE_SECONDS))
    core = client.CoreV1Api(cluster.api)

    def isolation_file() -> str:
        return str((core.read_namespaced_config_map(postgres.INIT_CONFIG, ns).data or {})[
            postgres.ISOLATION_KEY])

    def primary_told_of_the_files() -> bool:
        annotations = metadata_of(core.read_namespaced_pod("postgres-0", ns)).annotations or {}
        files = core.read_namespaced_config_map(postgres.INIT_CONFIG, ns)
        accounts = core.read_namespaced_secret("postgres-admin-roles", ns)
        versions = (f"{postgres.INIT_CONFIG}={metadata_of(files).resource_version} "
                    f"postgres-admin-roles={metadata_of(accounts).resource_version}")
        return annotations.get(postgres.LIVE_FILES_ANNOTATION) == versions

    assert isolation_file() == moment
    eventually(primary_told_of_the_files)

    # Lifted: the policies come back at once, the lift is reported once no
    # session begun after it can be taken for one of the isolation's.
    tenants.apply(cluster, tenants.small_tenant("incident"))
    eventually(lambda: len(_kinds(cluster, ns, "networkpolicies")) > 3)
    lifted = tenants.wait_condition(cluster, "incident", "Isolated", "False", timeout=60)
    ended = datetime.fromisoformat(
        tenants.condition(lifted, "Isolated")["lastTransitionTime"])  # type: ignore[index]
    assert ended.timestamp() >= int(moment), (ended, moment)
    assert lifted["status"]["isolated"] is False
    assert isolation_file() == ""
    eventually(primary_told_of_the_files)


def test_deleting_the_tenant_removes_its_stack_and_keeps_its_namespace(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    cleanup.append("gone")
    tenants.apply(cluster, tenants.small_tenant("gone"))
    tenants.wait_condition(cluster, "gone", "Ready", "True")
    core = client.CoreV1Api(cluster.api)
    # Something of the user's beside the tenant: not the tenant's to delete.
    core.create_namespaced_config_map("tenant-gone", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="users-own")))
    claims = eventually(lambda: {
        name_of(c) for c in core.list_namespaced_persistent_volume_claim("tenant-gone").items})
    tenants.delete(cluster, "gone", wait=True)

    def stack_gone() -> bool:
        return not _kinds(cluster, "tenant-gone",
                          "statefulsets,deployments,services,secrets,networkpolicies,"
                          "resourcequotas,poddisruptionbudgets,horizontalpodautoscalers")

    eventually(stack_gone, timeout=120)
    assert tenants.namespace_exists(cluster, "tenant-gone")
    assert name_of(core.read_namespaced_config_map("users-own", "tenant-gone"))
    # The data outlives the tenant (the StatefulSets retain their claims).
    kept = {name_of(c) for c in core.list_namespaced_persistent_volume_claim(
        "tenant-gone").items}
    assert claims and claims <= kept, (claims, kept)


def _stalled_in(cluster: ClusterHandle, name: str, namespace: str) -> dict[str, Any]:
    """Apply a small tenant ``name`` into ``namespace``; its Stalled condition once True."""
    tenants.apply(cluster, tenants.small_tenant(name, namespace=namespace))
    tenant = tenants.wait_condition(cluster, name, "Stalled", "True", namespace=namespace)
    return tenants.condition(tenant, "Stalled") or {}


def test_a_tenant_needs_a_namespace_and_a_name_of_its_own(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    cleanup += ["first", "taken"]
    tenants.apply(cluster, tenants.small_tenant("first"))
    tenants.wait_condition(cluster, "first", "Ready", "True")

    # A second tenant in the first one's namespace waits for it to leave.
    stalled = _stalled_in(cluster, "second", "tenant-first")
    assert stalled["reason"] == "NamespaceShared", stalled
    assert "tenant-first already holds StackForgeTenant first" in stalled["message"]

    # A namesake in another namespace: names key backups, metrics and alerts.
    stalled = _stalled_in(cluster, "first", "tenant-taken")
    assert stalled["reason"] == "TenantNameTaken", stalled
    assert "already exists in namespace tenant-first" in stalled["message"]
    # The refused ones built nothing; the first one is untouched.
    assert _kinds(cluster, "tenant-taken", "statefulsets,deployments") == set()
    first = tenants.get(cluster, "first")
    assert (tenants.condition(first, "Ready") or {}).get("status") == "True"

    # Once the first tenant is gone, both take over; the one in its namespace
    # without its kept claims (the former tenant's data: it ran on them before).
    tenants.delete(cluster, "first", wait=True)
    tenants.wait_condition(cluster, "first", "Ready", "True", namespace="tenant-taken")

    def held() -> dict[str, Any] | None:
        ready = tenants.condition(tenants.get(cluster, "second", "tenant-first"), "Ready") or {}
        return ready if ready.get("reason") == "ForeignVolumeClaims" else None

    ready = eventually(held, timeout=120)
    assert "data-postgres-0 (tenant first)" in ready["message"], ready
    assert "statefulset.apps/postgres" not in _kinds(cluster, "tenant-first", "statefulsets")
    cluster.kubectl("delete", "pvc", "-n", "tenant-first", "-l", "stackforge.io/tenant=first",
                    "--wait=true", timeout=120)
    tenants.wait_condition(cluster, "second", "Ready", "True", namespace="tenant-first")


def test_tenant_in_a_system_namespace_is_refused(
    cluster: ClusterHandle, operator: OperatorProcess
) -> None:
    try:
        stalled = _stalled_in(cluster, "intruder", "default")
        assert stalled["reason"] == "ReservedNamespace", stalled
        labels = metadata_of(client.CoreV1Api(cluster.api).read_namespace("default")).labels or {}
        assert "stackforge.io/tenant" not in labels
        assert _kinds(cluster, "default", "statefulsets,deployments") == set()
    finally:
        tenants.delete(cluster, "intruder", namespace="default")


def test_expiring_certificate_is_reported_with_days_left(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    cleanup.append("certs")
    ns = "tenant-certs"
    tenants.apply(cluster, tenants.small_tenant(
        "certs", domain="shop.example.com", tls={"secretName": "shop-tls"}))
    cert, key = tenants.certificate_pem(days=10)
    tenants.put_secret(cluster, ns, "shop-tls", {"tls.crt": cert, "tls.key": key})

    tenant = tenants.wait_condition(cluster, "certs", "CertificatesValid", "False")
    found = tenants.condition(tenant, "CertificatesValid")
    assert found is not None and found["reason"] == "ExpiringSoon"
    assert "expires in 10 days" in found["message"]
    assert tenant["status"]["certificate"]["daysRemaining"] == 10
    assert tenant["status"]["certificate"]["secretName"] == "shop-tls"
    # The runbook's weekly check needs a human: Ready falls, Stalled says why.
    tenant = tenants.wait_condition(cluster, "certs", "Stalled", "True")
    assert tenants.condition(tenant, "Ready")["status"] == "False"  # type: ignore[index]
    events = cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector",
        "involvedObject.name=certs,involvedObject.kind=StackForgeTenant",
        "-o", "jsonpath={range .items[*]}{.type} {.reason}{\"\\n\"}{end}").stdout
    assert "Warning ExpiringSoon" in events

    cert, key = tenants.certificate_pem(days=90)
    tenants.put_secret(cluster, ns, "shop-tls", {"tls.crt": cert, "tls.key": key})
    tenant = tenants.wait_condition(cluster, "certs", "Ready", "True", timeout=60)
    assert tenants.condition(tenant, "CertificatesValid")["status"] == "True"  # type: ignore[index]
    events = cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector",
        "involvedObject.name=certs,involvedObject.kind=StackForgeTenant",
        "-o", "jsonpath={range .items[*]}{.type} {.reason}{\"\\n\"}{end}").stdout
    assert "Normal AllComponentsReady" in events


CERT_MANAGER_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "certificates.cert-manager.io"},
    "spec": {
        "group": "cert-manager.io",
        "scope": "Namespaced",
        "names": {"kind": "Certificate", "plural": "certificates", "singular": "certificate"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}


def test_certificate_is_requested_from_cert_manager_when_installed(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(CERT_MANAGER_CRD))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                    "crd/certificates.cert-manager.io")
    try:
        cleanup.append("issued")
        ns = "tenant-issued"
        tenants.apply(cluster, tenants.small_tenant("issued", domain="issued.example.com", tls={
            "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}}))
        objects = client.CustomObjectsApi(cluster.api)

        def certificate() -> dict[str, Any] | None:
            from kubernetes.client.exceptions import ApiException

            try:
                found = objects.get_namespaced_custom_object(
                    "cert-manager.io", "v1", ns, "certificates", "tenant")
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
            assert isinstance(found, dict)  # the client types a custom object as a bare object
            return found

        # The operator notices the CRD within its discovery cache period.
        found = eventually(certificate, timeout=90)
        assert found["spec"]["dnsNames"] == ["issued.example.com"]
        assert found["spec"]["issuerRef"] == {"name": "letsencrypt", "kind": "ClusterIssuer",
                                              "group": "cert-manager.io"}
        assert found["spec"]["secretName"] == "issued-tls"
        ingress = client.NetworkingV1Api(cluster.api).read_namespaced_ingress("tenant", ns)
        tls = spec_of(ingress).tls
        assert tls is not None and tls[0].secret_name == "issued-tls"
        pending = tenants.wait_condition(cluster, "issued", "CertificatesValid", "Unknown")
        assert tenants.condition(pending, "CertificatesValid")["reason"] == (  # type: ignore[index]
            "CertificatePending")

        # What cert-manager would do: fill the Secret.
        cert, key = tenants.certificate_pem(days=90)
        tenants.put_secret(cluster, ns, "issued-tls", {"tls.crt": cert, "tls.key": key})
        tenant = tenants.wait_condition(cluster, "issued", "CertificatesValid", "True")
        assert tenant["status"]["certificate"]["daysRemaining"] == 90
    finally:
        cluster.kubectl("delete", "crd", "certificates.cert-manager.io", "--wait=false")


def test_operator_metrics_count_reconciles_and_tenants(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    import httpx

    cleanup.append("measured")
    tenants.apply(cluster, tenants.small_tenant("measured"))
    tenants.wait_condition(cluster, "measured", "Ready", "True")

    def samples() -> dict[str, float]:
        text = httpx.get(operator.metrics_url, timeout=5).text
        found = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                found[name] = float(value)
        return found

    def counted() -> dict[str, float] | None:
        found = samples()
        ready = found.get('stackforge_reconciles_total{kind="StackForgeTenant",result="ready"}')
        return found if ready and found.get('stackforge_tenants{ready="true"}', 0) >= 1 else None

    found = eventually(counted, timeout=30)
    assert found['stackforge_reconcile_duration_seconds_count{kind="StackForgeTenant"}'] >= 1
