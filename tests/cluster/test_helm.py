"""The Helm chart, rendered by Helm's library and applied to a real API server.

What `helm install` would send is applied into a fresh namespace that enforces
Pod Security `restricted`, CRDs first (as Helm installs crds/ before the
templates; the ClusterKopfPeering needs its CRD Established); the objects must
come back as rendered, the operator's Deployment (two peered replicas by
default) must become Available (kwok's nodes only mark its pods Running: that
they run, peer and reconcile is tests/realnode/test_operator_pod.py), and the
ServiceAccount must hold exactly the ClusterRole's rules, i.e. rbac.py's, on
top of what every authenticated identity gets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from stackforge_operator import peering, rbac
from tests.support import helm
from tests.support.clusters import ClusterHandle
from tests.support.objects import spec_of, status_of
from tests.support.tenants import eventually, small_tenant

RELEASE = "t-helm"
FIELD_MANAGER = "stackforge-tests"  # the same as the stackforge_crds fixture: no CRD conflicts

Grant = tuple[str, str, str, str]  # group, resource, verb, resourceName ("" for any)


def _grants(rules: Iterable[dict[str, Any]]) -> set[Grant]:
    """RBAC rules as single grants, so differently grouped rules compare equal."""
    return {
        (group, resource, verb, name)
        for rule in rules
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
        for name in rule.get("resourceNames") or [""]
    }


def _contains(actual: Any, expected: Any, path: str = "") -> list[str]:
    """Where ``actual`` (read back) lacks what ``expected`` (rendered) says.

    The API server may add defaults; it must not change or drop anything rendered.
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: {actual!r}"]
        return [miss for key, value in expected.items()
                for miss in _contains(actual.get(key), value, f"{path}.{key}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: {actual!r} != {expected!r}"]
        return [miss for i, (a, e) in enumerate(zip(actual, expected, strict=True))
                for miss in _contains(a, e, f"{path}[{i}]")]
    return [] if actual == expected else [f"{path}: {actual!r} != {expected!r}"]


CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering",
                  "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
_UNKNOWN_KIND = "doesn't have a resource type"  # kubectl, before the CRD is installed


@pytest.fixture
def rendered(cluster: ClusterHandle, namespace: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The chart rendered for a release in ``namespace``; its cluster-scoped objects removed after.

    The peering object is named after the namespace, not rbac.PEERING_NAME:
    tests/cluster/test_ha.py creates and deletes "stackforge" itself. The CRDs
    stay: they are the repository's, which other tests in the session use.
    """
    text = helm.template_text(release=RELEASE, namespace=namespace, include_crds=True,
                              values={"peering.name": namespace})
    docs = [d for d in yaml.safe_load_all(text) if d]
    ours = [d for d in docs if d["kind"] in CLUSTER_SCOPED]
    # Only delete afterwards what this test created. (Before the first apply of
    # the CRDs in a session, the peering kind itself may be unknown: none exists.)
    for doc in ours:
        found = cluster.kubectl("get", doc["kind"], doc["metadata"]["name"],
                                "--ignore-not-found", "-o", "name", check=False)
        unknown = found.returncode != 0 and _UNKNOWN_KIND in found.stderr
        assert unknown or found.returncode == 0, found.stderr
        assert not found.stdout.strip(), f"{found.stdout.strip()} exists before the test"
    try:
        yield text, docs
    finally:
        for doc in ours:
            deleted = cluster.kubectl("delete", doc["kind"], doc["metadata"]["name"],
                                      "--ignore-not-found", "--wait=true", check=False)
            assert deleted.returncode == 0 or _UNKNOWN_KIND in deleted.stderr, deleted.stderr


def _restricted(cluster: ClusterHandle, namespace: str) -> None:
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    client.CoreV1Api(cluster.api).patch_namespace(namespace, {"metadata": {"labels": labels}})


def _service_account_rules(cluster: ClusterHandle, namespace: str, name: str) -> set[Grant]:
    """What the ServiceAccount may do in ``namespace``, as the API server's authorizer says."""
    token = cluster.service_account_token(namespace, name)
    review = client.AuthorizationV1Api(cluster.api_as(token)).create_self_subject_rules_review(
        client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(
            namespace=namespace)))
    status = status_of(review)
    assert not status.incomplete, status.evaluation_error
    return _grants(client.ApiClient().sanitize_for_serialization(status.resource_rules))


def _granted_to_everyone(cluster: ClusterHandle, namespace: str) -> set[Grant]:
    """Resource rules every ServiceAccount of ``namespace`` gets from the default bindings."""
    groups = {"system:authenticated", "system:serviceaccounts",
              f"system:serviceaccounts:{namespace}"}
    api = client.RbacAuthorizationV1Api(cluster.api)
    roles = {b.role_ref.name for b in api.list_cluster_role_binding().items
             if any(s.kind == "Group" and s.name in groups for s in b.subjects or [])}
    rules = [client.ApiClient().sanitize_for_serialization(rule)
             for role in roles for rule in api.read_cluster_role(role).rules or []]
    return _grants(rules)


def test_chart_installs_and_runs(
    cluster: ClusterHandle, namespace: str, rendered: tuple[str, list[dict[str, Any]]]
) -> None:
    _, docs = rendered
    _restricted(cluster, namespace)
    # As Helm: crds/ first, Established, then the templates (the peering object needs its CRD).
    crds = helm.find(docs, "CustomResourceDefinition")
    assert f"{peering.PLURAL}.{peering.GROUP}" in {c["metadata"]["name"] for c in crds}
    others = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    for batch in (crds, others):
        applied = cluster.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
                                  "-f", "-", input=yaml.safe_dump_all(batch))
        assert "Warning" not in applied.stderr, applied.stderr  # e.g. a Pod Security warning
        if batch is crds:
            cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                            *(f"crd/{c['metadata']['name']}" for c in crds))

    # Every object is there as rendered (the API server only adds defaults).
    for doc in docs:
        scope = ["-n", doc["metadata"]["namespace"]] if "namespace" in doc["metadata"] else []
        found = json.loads(cluster.kubectl(
            "get", doc["kind"], doc["metadata"]["name"], *scope, "-o", "json").stdout)
        assert _contains(found, doc) == [], doc["kind"]

    # The operator's pods pass restricted admission and are marked ready on kwok nodes,
    # each peering through this release's peering object.
    waited = cluster.kubectl("wait", "-n", namespace, "--for=condition=Available",
                             "--timeout=90s", "deployment/stackforge-operator")
    assert "condition met" in waited.stdout
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/instance={RELEASE}").items
    assert len(pods) == 2
    for pod in pods:
        spec = spec_of(pod)
        assert spec.node_name is not None and spec.node_name.startswith("kwok-node-")
        assert spec.service_account_name == "stackforge-operator"
        assert f"--peering={namespace}" in (spec.containers[0].args or [])
    # Where the scheduler puts the standby is its call: the anti-affinity is only
    # preferred (the rendered rule is checked in tests/unit/test_chart.py).

    # The ServiceAccount holds exactly rbac.py's rules beyond what everyone holds
    # (the peering patch rule naming this release's peering object);
    # the binding reaches the authorizer's cache within moments.
    role = helm.only(docs, "ClusterRole", "stackforge-operator:")
    assert _grants(role["rules"]) == {
        (group, resource, verb, namespace if name == rbac.PEERING_NAME else name)
        for group, resource, verb, name in _grants(rbac.policy_rules(rbac.CLUSTER_ROLE_RULES))}
    # In its own namespace also its Role's: tokens of the kubelet reader, no other.
    own = _grants(helm.only(docs, "Role")["rules"])
    assert own == {("", "serviceaccounts/token", "create", rbac.KUBELET_READER)}
    expected = _grants(role["rules"]) | own | _granted_to_everyone(cluster, namespace)
    eventually(lambda: _service_account_rules(cluster, namespace, "stackforge-operator")
               == expected, timeout=15)

    subject = f"--as=system:serviceaccount:{namespace}:stackforge-operator"
    # The kubelets are shown the reader's tokens, never the operator's: it may
    # mint those in its namespace only, and the reader may read node statistics only.
    reader = f"--as=system:serviceaccount:{namespace}:{rbac.KUBELET_READER}"
    token = ("create", f"serviceaccounts/{rbac.KUBELET_READER}", "--subresource=token")
    for question, allowed in [
        ((subject, "update", "secrets", "-A"), "no"),
        ((subject, "patch", "stackforgetenants.stackforge.io", "--subresource=status", "-A"),
         "yes"),
        ((subject, "update", "deployments.apps", "-A"), "no"),
        ((subject, "bind", "clusterroles.rbac.authorization.k8s.io", "-A"), "no"),
        ((subject, "patch", f"clusterkopfpeerings.kopf.dev/{namespace}", "-A"), "yes"),
        ((subject, "patch", f"clusterkopfpeerings.kopf.dev/{rbac.PEERING_NAME}", "-A"), "no"),
        ((subject, "get", "nodes", "--subresource=stats"), "no"),
        ((subject, *token, "-n", namespace), "yes"),
        ((subject, *token, "-n", "default"), "no"),
        ((subject, "create", "serviceaccounts/default", "--subresource=token", "-n", namespace),
         "no"),
        ((reader, "get", "nodes", "--subresource=stats"), "yes"),
        ((reader, "get", "nodes", "--subresource=proxy"), "no"),
        ((reader, "get", "secrets", "-A"), "no"),
    ]:
        answer = cluster.kubectl("auth", "can-i", *question, check=False)
        assert answer.stdout.strip() == allowed, (question, answer.stdout)

    # The release's namespace is the operator's own: a tenant there (whose
    # default-deny policy would cut the operator off) is refused at admission.
    tenant = small_tenant("squatter", namespace=namespace)

    def refused() -> str | None:
        created = cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(tenant),
                                  check=False)
        if created.returncode == 0:
            cluster.kubectl("delete", "stackforgetenant", "squatter", "-n", namespace)
            return None
        return created.stderr

    message = eventually(refused, timeout=30)  # a new policy compiles within moments
    assert (f"namespace {namespace} is the StackForge operator's own; put the tenant in a "
            "namespace of its own") in message, message
