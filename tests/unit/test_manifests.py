"""manifests/: shape, generated files in sync, least-privilege RBAC, restricted pod.

The RBAC checks compare stackforge_operator.rbac (which clusterrole.yaml is
generated from) with what the code asks of the API: every kube.* call and
every kopf handler (tests/support/api_usage.py). A real-cluster test running
the operator as its ServiceAccount is the final word; this catches a missing
or surplus rule in a second.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackforge_operator import (
    API_GROUP,
    API_VERSION,
    admission,
    cached_kinds,
    manifestgen,
    rbac,
)
from stackforge_operator.builders import credentials, ingress, stack
from stackforge_operator.builders.common import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    OPERATOR_NAMESPACE,
    TENANT_LABEL,
)
from stackforge_operator.crdgen import render_all as render_crds
from stackforge_operator.metrics import DEFAULT_PORT, PORT_ENV
from stackforge_operator.reconcile import tenant_evidence
from stackforge_operator.reconcile.tenant import CERTIFICATE_KIND, MANAGED_KINDS
from tests.support.api_usage import (
    PACKAGE_DIR,
    Unresolved,
    Use,
    kopf_watches,
    kube_calls,
    owner_references,
)
from tests.support.pod_security import restricted_violations
from tests.unit.builders.tenants import ENTERPRISE, tenant

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
CHART = REPO / "charts" / "stackforge-operator"
NAME = "stackforge-operator"
API = f"{API_GROUP}/{API_VERSION}"

EXPECTED = {
    ("Namespace", OPERATOR_NAMESPACE),
    ("ServiceAccount", NAME),
    ("ClusterRole", NAME),
    ("ClusterRoleBinding", NAME),
    ("ServiceAccount", rbac.KUBELET_READER),
    ("ClusterRole", rbac.KUBELET_READER),
    ("ClusterRoleBinding", rbac.KUBELET_READER),
    ("Role", NAME),
    ("RoleBinding", NAME),
    ("Service", f"{NAME}-metrics"),
    ("Deployment", NAME),
    ("PodDisruptionBudget", NAME),
    ("CustomResourceDefinition", "stackforgetenants.stackforge.io"),
    ("CustomResourceDefinition", "backuppolicies.stackforge.io"),
    ("CustomResourceDefinition", "drdrills.stackforge.io"),
    ("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev"),
    ("ClusterKopfPeering", rbac.PEERING_NAME),
    ("ValidatingAdmissionPolicy", admission.POLICY_NAME),
    ("ValidatingAdmissionPolicyBinding", admission.POLICY_NAME),
}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def kustomized_files() -> list[Path]:
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    return [MANIFESTS / p for p in listed]


def installed() -> list[dict[str, Any]]:
    """What `kubectl apply -k manifests/` creates."""
    return [d for p in kustomized_files() for d in _docs(p)]


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in installed()
             if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment", NAME)["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec()["containers"]
    assert len(containers) == 1
    return containers[0]


# --------------------------------------------------------------------------- files


def test_installs_exactly_the_expected_objects() -> None:
    found = [(d["kind"], d["metadata"]["name"]) for d in installed()]
    assert len(found) == len(set(found)), "an object is defined twice"
    assert set(found) == EXPECTED


def test_kustomization_lists_every_manifest() -> None:
    # argocd/ patches Argo CD's own ConfigMap in another namespace: never installed here;
    # plugin/ is the role of the plugin's users, a person's to bind.
    on_disk = {p for p in MANIFESTS.rglob("*.yaml")
               if p.name != "kustomization.yaml" and "argocd" not in p.parts
               and "plugin" not in p.parts}
    assert set(kustomized_files()) == on_disk


def test_namespaced_objects_live_in_the_operator_namespace() -> None:
    for doc in installed():
        if doc["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding",
                           "CustomResourceDefinition", "ClusterKopfPeering",
                           "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
            assert "namespace" not in doc["metadata"]
        else:
            assert doc["metadata"]["namespace"] == OPERATOR_NAMESPACE, doc["kind"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not on PATH")
def test_kustomize_builds_the_same_objects() -> None:
    built = subprocess.run(["kubectl", "kustomize", str(MANIFESTS)], check=True,
                           capture_output=True, text=True, timeout=60).stdout
    docs = [d for d in yaml.safe_load_all(built) if d]
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(docs, key=key) == sorted(installed(), key=key)


def test_generated_files_are_up_to_date() -> None:
    rendered = manifestgen.render_all(MANIFESTS)
    stale = [str(p) for p, text in rendered.items()
             if not (MANIFESTS / p).exists() or (MANIFESTS / p).read_text() != text]
    assert not stale, f"run `python -m stackforge_operator.manifestgen`: {stale}"


def chart_drift(chart: Path, crds: Path, manifests: Path) -> list[str]:
    """Generated chart files that differ from what manifestgen renders, or have no source."""
    rendered = manifestgen.render_chart(crds, manifests)
    stale = [str(p) for p, text in rendered.items()
             if not (chart / p).exists() or (chart / p).read_text() != text]
    return stale + [str(p) for p in manifestgen.stale_chart_crds(chart, crds)]


def test_chart_generated_files_are_up_to_date() -> None:
    stale = chart_drift(CHART, REPO / "crds", MANIFESTS)
    assert not stale, f"run `python -m stackforge_operator.manifestgen`: {stale}"
    # Every file of crds/ ships with the chart, whatever generated it.
    assert {p.name for p in (CHART / "crds").iterdir()} == {
        p.name for p in (REPO / "crds").glob("*.yaml")}


def test_chart_drift_is_caught(tmp_path: Path) -> None:
    chart, crds = tmp_path / "chart", tmp_path / "crds"
    shutil.copytree(REPO / "crds", crds)
    written = manifestgen.write_chart(chart, crds, MANIFESTS)
    assert chart_drift(chart, crds, MANIFESTS) == []
    assert {p.relative_to(chart) for p in written} == set(
        manifestgen.render_chart(crds, MANIFESTS))
    # A stale CRD copy, a stale rules template, a new CRD file and a removed one.
    (chart / "crds" / "stackforge.io_drdrills.yaml").write_text("stale\n")
    (chart / "templates" / "_rbac_generated.tpl").write_text("stale\n")
    (crds / "stackforge.io_new.yaml").write_text("kind: CustomResourceDefinition\n")
    (crds / "stackforge.io_backuppolicies.yaml").unlink()
    assert sorted(chart_drift(chart, crds, MANIFESTS)) == sorted([
        "crds/stackforge.io_drdrills.yaml", "templates/_rbac_generated.tpl",
        "crds/stackforge.io_new.yaml", str(chart / "crds" / "stackforge.io_backuppolicies.yaml")])
    manifestgen.write_chart(chart, crds, MANIFESTS)
    assert chart_drift(chart, crds, MANIFESTS) == []
    assert not (chart / "crds" / "stackforge.io_backuppolicies.yaml").exists()


def test_crd_copies_match_crds_dir() -> None:
    copies = {p.name: p.read_text() for p in (MANIFESTS / "crds").glob("*.yaml")}
    assert copies == render_crds()
    assert copies == {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}


def test_write_all(tmp_path: Path) -> None:
    (tmp_path / "argocd").mkdir()
    shutil.copy(MANIFESTS / "argocd" / "health.lua", tmp_path / "argocd" / "health.lua")
    written = manifestgen.write_all(tmp_path)
    assert {p.relative_to(tmp_path) for p in written} == set(manifestgen.render_all(tmp_path))
    for path in written:
        assert yaml.safe_load_all(path.read_text())


def test_argocd_cm_refuses_scripts_that_would_not_survive_yaml() -> None:
    with pytest.raises(ValueError, match="trailing spaces"):
        manifestgen.render_argocd_cm("return hs \n")


# --------------------------------------------------------------------------- namespace, identity


def test_namespace_enforces_restricted() -> None:
    labels = one("Namespace")["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_binding_ties_the_role_to_the_service_account() -> None:
    binding = one("ClusterRoleBinding", NAME)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": NAME}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME,
                                    "namespace": OPERATOR_NAMESPACE}]
    assert pod_spec()["serviceAccountName"] == one("ServiceAccount", NAME)["metadata"]["name"]


def test_the_operator_shows_the_kubelets_a_reader_of_statistics_only() -> None:
    """A token sent to a kubelet is its node's from then on: the operator's own
    (Secrets and workloads everywhere) must never be one; the reader's may read
    node statistics and nothing else, and the operator may request its tokens,
    no other account's, in its own namespace only."""
    for resource in ("nodes/stats", "nodes/proxy", "nodes/log"):
        assert not rbac.allows(rbac.CLUSTER_ROLE_RULES, "", resource, "get"), resource
    assert one("ClusterRole", rbac.KUBELET_READER)["rules"] == [
        {"apiGroups": [""], "resources": ["nodes/stats"], "verbs": ["get"]}]
    reader = one("ClusterRoleBinding", rbac.KUBELET_READER)
    assert reader["roleRef"]["name"] == rbac.KUBELET_READER
    assert reader["subjects"] == [{"kind": "ServiceAccount", "name": rbac.KUBELET_READER,
                                   "namespace": OPERATOR_NAMESPACE}]
    assert one("ServiceAccount", rbac.KUBELET_READER)["automountServiceAccountToken"] is False
    role, binding = one("Role", NAME), one("RoleBinding", NAME)
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] \
        == OPERATOR_NAMESPACE
    assert role["rules"] == [{"apiGroups": [""], "resources": ["serviceaccounts/token"],
                              "resourceNames": [rbac.KUBELET_READER], "verbs": ["create"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": NAME}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME,
                                    "namespace": OPERATOR_NAMESPACE}]
    assert not rbac.allows(rbac.CLUSTER_ROLE_RULES, "", "serviceaccounts/token", "create",
                           rbac.KUBELET_READER)


# --------------------------------------------------------------------------- RBAC shape


def rbac_docs() -> list[dict[str, Any]]:
    """The installed roles, and the plugin users' role beside them."""
    return [d for d in installed() if d["kind"] in ("ClusterRole", "Role")] + _docs(
        MANIFESTS / "plugin" / "clusterrole.yaml")


def test_the_plugin_users_role_reads_no_secret_and_writes_only_requests() -> None:
    """A person on call may start work (exec, port-forward, a drill, annotations and
    spec.isolate through patch) but not read credentials nor change the stack."""
    role, shell = _docs(MANIFESTS / "plugin" / "clusterrole.yaml")
    assert (role["metadata"]["name"], shell["metadata"]["name"]) == (
        rbac.PLUGIN_USER_ROLE, rbac.PLUGIN_SHELL_ROLE)

    def granted(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
        return {(g, r, v) for rule in doc["rules"] for g in rule["apiGroups"]
                for r in rule["resources"] for v in rule["verbs"]}

    assert not [g for g in granted(role) | granted(shell) if g[1] == "secrets"]
    writes = {g for g in granted(role) if g[2] not in ("get", "list", "watch")}
    assert writes == {
        (API_GROUP, "stackforgetenants", "patch"), (API_GROUP, "backuppolicies", "patch"),
        (API_GROUP, "drdrills", "create"),
    }
    # A shell in pods only through the role bound per tenant namespace: bound
    # cluster-wide with the rest, it reached the operator's pod and its token.
    assert granted(shell) == {("", "pods/exec", "get"), ("", "pods/exec", "create"),
                              ("", "pods/portforward", "get"),
                              ("", "pods/portforward", "create")}


def test_no_wildcards_or_dangerous_verbs() -> None:
    for doc in rbac_docs():
        for rule in doc["rules"]:
            assert "nonResourceURLs" not in rule
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert not any("*" in item for item in rule.get(field, [])), (field, rule)
            assert not set(rule["verbs"]) & rbac.FORBIDDEN_VERBS, rule
            # Writes are server-side apply (patch); update would be a grant never used,
            # except the finalizers check behind blockOwnerDeletion.
            if "update" in rule["verbs"]:
                assert all(r.endswith("/finalizers") for r in rule["resources"]), rule


def test_only_the_operators_own_secrets_are_held() -> None:
    # A watch on Secrets without a selector would stream every Secret of the cluster
    # into the operator's memory: its watch cache holds only its own (RBAC cannot
    # say so, since list already grants every Secret). The others' changes are
    # counted from their metadata alone (a settled tenant's token).
    stores = cached_kinds.operator_stores(with_certificates=True, with_monitoring=True)
    secrets = [s for s in stores if s.kind == "Secret"]
    assert [(s.label_selector, s.counts_only) for s in secrets] == [
        (f"{MANAGED_BY_LABEL}={MANAGED_BY},{TENANT_LABEL}", False), ("", True)]
    # Every cached kind may be listed and watched by the shipped role.
    for store in stores:
        group, plural = rbac.resource_of(store.api_version, store.kind)
        for verb in ("list", "watch"):
            assert rbac.allows(rbac.REQUIRED_RULES, group, plural, verb), (store.kind, verb)


def test_every_rule_says_why() -> None:
    for rule in (*rbac.REQUIRED_RULES, *rbac.PEERING_RULES, *rbac.KUBELET_READER_RULES,
                 *rbac.OPERATOR_NAMESPACE_RULES):
        assert len(rule.why) > 10, rule


def test_cluster_role_is_the_required_and_peering_rules() -> None:
    # The shipped Deployment peers (--peering), so its role carries PEERING_RULES.
    assert "--peering=stackforge" in container()["args"]
    assert one("ClusterRole", NAME)["rules"] == rbac.policy_rules(
        (*rbac.REQUIRED_RULES, *rbac.PEERING_RULES))


def test_the_operator_may_grant_no_rights() -> None:
    """The drill sandbox had a Role and RoleBinding, unused (its runner has no
    token), for which the operator could make Roles and RoleBindings in any
    namespace: a stolen token of its could bind its own rights to anyone."""
    for group, resource in (("rbac.authorization.k8s.io", "roles"),
                            ("rbac.authorization.k8s.io", "rolebindings"),
                            ("rbac.authorization.k8s.io", "clusterroles"),
                            ("rbac.authorization.k8s.io", "clusterrolebindings")):
        for verb in ("create", "patch", "update", "bind", "escalate"):
            assert not rbac.allows(rbac.CLUSTER_ROLE_RULES, group, resource, verb), (
                resource, verb)


def test_peering_rules_cover_kopf_peering() -> None:
    # kopf's own name for the resource a cluster-wide operator peers through
    # (an internal module: a rename in kopf fails here, not in production).
    from kopf._cogs.structs.references import CLUSTER_PEERINGS_K

    assert (CLUSTER_PEERINGS_K.group, CLUSTER_PEERINGS_K.any_name) == (
        "kopf.dev", "clusterkopfpeerings")
    rules = rbac.PEERING_RULES
    for verb in ("list", "watch"):
        assert rbac.allows(rules, "kopf.dev", "clusterkopfpeerings", verb)
    # Keep-alives are merge patches of the object itself: kopf never gets,
    # creates or deletes it, nor touches another one.
    assert rbac.allows(rules, "kopf.dev", "clusterkopfpeerings", "patch", rbac.PEERING_NAME)
    assert not rbac.allows(rules, "kopf.dev", "clusterkopfpeerings", "patch", "other")
    for verb in ("get", "create", "delete", "update"):
        assert not rbac.allows(rules, "kopf.dev", "clusterkopfpeerings", verb, rbac.PEERING_NAME)
    assert not rbac.allows(rules, "kopf.dev", "clusterkopfpeerings/status", "patch",
                           rbac.PEERING_NAME)


def test_peering_crd_has_no_status_subresource() -> None:
    # With one, kopf would patch clusterkopfpeerings/status, which no rule grants.
    crd = one("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev")
    assert crd["spec"]["scope"] == "Cluster"
    assert [v.get("subresources") for v in crd["spec"]["versions"]] == [None]
    peering = one("ClusterKopfPeering", rbac.PEERING_NAME)
    assert peering["apiVersion"] == "kopf.dev/v1"


def test_allows_matches_rbac_semantics() -> None:
    rules = (rbac.Rule("apps", ("deployments",), ("get",), "x", ("web",)),
             rbac.Rule("", ("pods",), ("list",), "y"))
    assert rbac.allows(rules, "", "pods", "list")
    assert not rbac.allows(rules, "apps", "pods", "list")
    assert rbac.allows(rules, "apps", "deployments", "get", "web")
    assert not rbac.allows(rules, "apps", "deployments", "get")
    with pytest.raises(KeyError, match="RESOURCES"):
        rbac.resource_of("v1", "Unknown")


# --------------------------------------------------------------------------- RBAC vs code


def tenant_applied_kinds() -> set[tuple[str, str]]:
    """Every kind a tenant reconcile applies, from the builders themselves."""
    t = tenant(ENTERPRISE)
    secrets = credentials.build(t, existing={}, existing_rotation={}, rotation_request=None)
    children = [*stack.desired_children(t, secrets=secrets, tls=None, rotation=None),
                ingress.build_certificate(t, "letsencrypt")]
    return {(m["apiVersion"], m["kind"]) for m in children}


def tenant_children() -> list[tuple[str, str]]:
    return [*MANAGED_KINDS, CERTIFICATE_KIND]


def backup_policy_kinds() -> list[tuple[str, str]]:
    return [("networking.k8s.io/v1", "NetworkPolicy"), ("v1", "ConfigMap"),
            ("batch/v1", "CronJob"), ("batch/v1", "Job")]


def drill_sandbox_kinds() -> list[tuple[str, str]]:
    return [("v1", "Namespace"), ("networking.k8s.io/v1", "NetworkPolicy"),
            ("v1", "ServiceAccount"), ("v1", "Secret"),
            ("v1", "Service"), ("apps/v1", "StatefulSet"), ("v1", "ConfigMap")]


# Calls whose kind is decided at run time, with the kinds they can touch.
# A new such call fails test_every_dynamic_call_is_accounted_for: add it here.
ACKNOWLEDGED: dict[tuple[str, str], Callable[[], Iterable[tuple[str, str]]]] = {
    ("stackforge_operator.reconcile.tenant:reconcile", "apply"): tenant_applied_kinds,
    ("stackforge_operator.reconcile.tenant:_observe_children", "list_objects"): tenant_children,
    ("stackforge_operator.reconcile.tenant:_prune", "delete"): tenant_children,
    ("stackforge_operator.reconcile.tenant_observe:_for_tenant", "list_objects"):
        lambda: [(API, "BackupPolicy"), (API, "DRDrill")],
    # builders/backup.py: the configuration snapshot, the CronJob, an on-demand Job;
    # builders/backup_network.py: the runners' egress policy.
    ("stackforge_operator.reconcile.backup:reconcile", "apply"): backup_policy_kinds,
    ("stackforge_operator.reconcile.backup:_applied", "get"): backup_policy_kinds,
    ("stackforge_operator.reconcile.backup:_applied", "apply"): backup_policy_kinds,
    # The object a reconcile met a 404 for, read back: the operator's own kinds.
    ("stackforge_operator.controller:_gone_from_api", "get"):
        lambda: [(API, "StackForgeTenant"), (API, "BackupPolicy"), (API, "DRDrill")],
    # The run a suspend window swallowed, started late (backup_catchup.py).
    ("stackforge_operator.reconcile.backup:_make_up_missed_run", "apply"):
        lambda: [("batch/v1", "Job")],
    # builders/drill.py: a run's sandbox and what lives in it.
    ("stackforge_operator.reconcile.drill:_repair", "get"): drill_sandbox_kinds,
    ("stackforge_operator.reconcile.drill:_repair", "apply"): drill_sandbox_kinds,
    ("stackforge_operator.reconcile.drill:_drive", "apply"): lambda: [("batch/v1", "Job")],
    # An isolated tenant's evidence: the kinds it bundles.
    ("stackforge_operator.reconcile.tenant_evidence:_files", "list_objects"):
        lambda: list(tenant_evidence.KINDS),
}
# Server-side apply needs `create` only when the object is missing. These
# sites patch objects that exist and must never create one.
APPLY_WITHOUT_CREATE = {
    # Resizes existing claims; a claim deleted meanwhile must not come back empty.
    ("stackforge_operator.reconcile.tenant:_grow_volumes", "PersistentVolumeClaim"),
}
# kopf itself: resource scanning (CRDs appearing while it runs) and Events.
FRAMEWORK = [
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("", "events", "create"),
]
# kopf peering (kopf/_core/engines/peering.py): the watch on the peering kind,
# and keep-alives patched into the one object the Deployment names.
PEERING = [
    ("kopf.dev", "clusterkopfpeerings", "list", None),
    ("kopf.dev", "clusterkopfpeerings", "watch", None),
    ("kopf.dev", "clusterkopfpeerings", "patch", rbac.PEERING_NAME),
]
# Rules for code still to come; remove an entry when its code lands (the
# scan then has to find the use, or the rule goes).
PLANNED = {
    (API_GROUP, "drdrills/finalizers"): "DR drill: sandbox children owned by the drill",
}


def dynamic_uses(site: Unresolved) -> list[Use]:
    from tests.support.api_usage import VERBS

    kinds = ACKNOWLEDGED[(site.where, site.function)]()
    return [Use(v, k, verb, site.where) for v, k in kinds for verb in VERBS[site.function]]


def all_uses() -> list[Use]:
    uses, unresolved = kube_calls()
    uses += owner_references()
    for site in unresolved:
        if (site.where, site.function) in ACKNOWLEDGED:
            uses += dynamic_uses(site)
    return [u for u in uses
            if not (u.verb == "create" and (u.where, u.kind) in APPLY_WITHOUT_CREATE)]


def test_every_dynamic_call_is_accounted_for() -> None:
    _, unresolved = kube_calls()
    missing = [s for s in unresolved if (s.where, s.function) not in ACKNOWLEDGED]
    assert not missing, (
        "kube calls whose kind the scan cannot see; add them to ACKNOWLEDGED with the "
        f"kinds they touch (and rules to rbac.py if needed): {missing}")
    stale = set(ACKNOWLEDGED) - {(s.where, s.function) for s in unresolved}
    assert not stale, f"ACKNOWLEDGED entries without a call site any more: {stale}"


def test_the_tenant_applies_only_managed_kinds() -> None:
    # Pruning and observation look at MANAGED_KINDS: an applied kind missing
    # there would never be pruned (and its RBAC never checked for delete).
    managed = {*tenant_children(), ("v1", "Namespace")}
    assert tenant_applied_kinds() <= managed


def _allowed(use: Use) -> bool:
    group, resource, verb = use.rbac_question()
    if resource == "serviceaccounts/token":
        # The kubelet reader's only, in the operator's namespace (volume_stats.py).
        return rbac.allows(rbac.OPERATOR_NAMESPACE_RULES, group, resource, verb,
                           rbac.KUBELET_READER)
    return rbac.allows(rbac.REQUIRED_RULES, group, resource, verb)


def test_every_api_call_is_allowed() -> None:
    denied = sorted({(u.rbac_question(), u.where) for u in all_uses() if not _allowed(u)})
    assert not denied, f"add rules to stackforge_operator/rbac.py for: {denied}"


def test_every_kopf_watch_is_allowed() -> None:
    needs = [*kopf_watches(), *((g, r, v, "kopf") for g, r, v in FRAMEWORK)]
    denied = [n for n in needs if not rbac.allows(rbac.REQUIRED_RULES, *n[:3])]
    assert not denied, f"add rules to stackforge_operator/rbac.py for: {denied}"
    denied_peering = [n for n in PEERING if not rbac.allows(rbac.PEERING_RULES, *n)]
    assert not denied_peering, f"add rules to rbac.PEERING_RULES for: {denied_peering}"


def test_every_rule_is_used_or_planned() -> None:
    # The other half of least privilege: no rule for a resource nothing touches.
    used = {u.rbac_question()[:2] for u in all_uses()}
    used |= {(g, r) for g, r, _, _ in kopf_watches()} | {(g, r) for g, r, _ in FRAMEWORK}
    used |= {(g, r) for g, r, _, _ in PEERING}
    # The watch caches' LISTs and WATCHes (informer.py).
    used |= {rbac.resource_of(s.api_version, s.kind) for s in cached_kinds.operator_stores(
        with_certificates=True, with_monitoring=True)}
    granted = {(rule.group, res) for rule in rbac.CLUSTER_ROLE_RULES for res in rule.resources}
    unused = granted - used - set(PLANNED)
    assert not unused, f"rules nothing in the code needs: {sorted(unused)}"
    landed = set(PLANNED) & used
    assert not landed, f"code for these landed; drop them from PLANNED: {sorted(landed)}"


def test_the_sandbox_kinds_and_the_operators_own_kinds_grant_only_the_verbs_used() -> None:
    """Verb by verb where the code is plain to read: a drill sandbox's
    ServiceAccount is read and applied, never listed nor deleted (its Namespace
    takes it); cluster-wide, delete reached kube-system's. Policies and drills
    are only watched and read (event handlers: kopf patches nothing on them),
    their status aside."""
    used = {u.rbac_question() for u in all_uses()}
    granted = {(rule.group, res, verb) for rule in rbac.CLUSTER_ROLE_RULES
               for res in rule.resources for verb in rule.verbs}
    for group, resource in (("", "serviceaccounts"),
                            (API_GROUP, "backuppolicies"), (API_GROUP, "drdrills")):
        verbs = {v for g, r, v in granted if (g, r) == (group, resource)}
        needed = {v for g, r, v in used if (g, r) == (group, resource)}
        needed |= {v for g, r, v, _ in kopf_watches() if (g, r) == (group, resource)}
        assert verbs == needed, (resource, sorted(verbs), sorted(needed))


def test_the_scan_sees_the_calls_it_should() -> None:
    # Guard against a scan that silently finds nothing (e.g. kube imported under a new name).
    questions = {u.rbac_question() for u in all_uses()}
    assert ("stackforge.io", "stackforgetenants/status", "patch") in questions
    assert ("", "secrets", "get") in questions
    assert ("apps", "statefulsets", "create") in questions
    assert ("", "persistentvolumeclaims", "patch") in questions
    assert ("stackforge.io", "stackforgetenants/finalizers", "update") in questions
    assert ("", "serviceaccounts/token", "create") in questions
    assert PACKAGE_DIR.name == "stackforge_operator"


# --------------------------------------------------------------------------- the Deployment


def test_pod_meets_the_restricted_profile() -> None:
    assert restricted_violations(pod_spec()) == []


@pytest.mark.parametrize(("path", "value", "problem"), [
    (("securityContext", "runAsNonRoot"), False, "runAsNonRoot"),
    (("containers", 0, "securityContext", "allowPrivilegeEscalation"), True,
     "allowPrivilegeEscalation"),
    (("containers", 0, "securityContext", "capabilities", "drop"), ["NET_RAW"], "drop ALL"),
    (("containers", 0, "securityContext", "capabilities", "add"), ["SYS_ADMIN"], "capabilities"),
    (("containers", 0, "securityContext", "seccompProfile", "type"), "Unconfined", "seccomp"),
    (("containers", 0, "securityContext", "readOnlyRootFilesystem"), False, "readOnlyRoot"),
    (("containers", 0, "securityContext", "privileged"), True, "privileged"),
    (("hostNetwork",), True, "hostNetwork"),
    (("volumes", 0), {"name": "host", "hostPath": {"path": "/"}}, "hostPath"),
    (("containers", 0, "ports", 0, "hostPort"), 8080, "hostPort"),
])
def test_restricted_check_catches_each_breach(
    path: tuple[str | int, ...], value: Any, problem: str
) -> None:
    spec = copy.deepcopy(pod_spec())
    node: Any = spec
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    if path == ("securityContext", "runAsNonRoot"):
        del spec["containers"][0]["securityContext"]["runAsNonRoot"]
    found = restricted_violations(spec)
    assert any(problem in p for p in found), found


def test_liveness_probe_is_kopfs_endpoint() -> None:
    c = container()
    probe = c["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert probe["path"] == "/healthz" and ports[probe["port"]] == 8080
    assert c["args"][:2] == ["run", "--liveness=http://0.0.0.0:8080/healthz"]


def test_resources_are_bounded() -> None:
    resources = container()["resources"]
    for bound in ("requests", "limits"):
        assert set(resources[bound]) == {"cpu", "memory"}


def test_two_replicas_peer_with_distinct_priorities() -> None:
    # Two kopf operators reconcile the same objects unless they peer, and peers
    # of equal priority all pause: one pod template needs --priority=auto.
    spec = one("Deployment", NAME)["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container()["args"][2:] == [f"--peering={rbac.PEERING_NAME}", "--priority=auto"]
    env = {e["name"]: e for e in container()["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert int(env["STACKFORGE_PEERING_LIFETIME_SECONDS"]["value"]) < 30
    assert container()["image"] == "stackforge/stackforge-operator:0.1.0"


def test_metrics_port_agrees_everywhere() -> None:
    c = container()
    env = {e["name"]: e.get("value") for e in c["env"]}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    service = one("Service", f"{NAME}-metrics")
    assert int(env[PORT_ENV]) == ports["metrics"] == DEFAULT_PORT
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    labels = one("Deployment", NAME)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_every_stackforge_variable_is_read_by_the_operator() -> None:
    # A setting nobody reads would look like configuration and do nothing.
    source = "\n".join(p.read_text() for p in PACKAGE_DIR.rglob("*.py"))
    for entry in container()["env"]:
        if entry["name"].startswith("STACKFORGE_"):
            assert f'"{entry["name"]}"' in source, entry["name"]


def test_disruption_budget_keeps_a_standby_through_a_drain() -> None:
    documents = {(d["kind"], d["metadata"]["name"]): d for d in installed()}
    budget = documents[("PodDisruptionBudget", NAME)]["spec"]
    deployment = documents[("Deployment", NAME)]["spec"]
    assert deployment["replicas"] == 2 and budget["maxUnavailable"] == 1
    pod_labels = deployment["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
