"""Every Kubernetes permission the operator needs, as data (no I/O).

This is the one place the operator's RBAC is written down:

- ``manifests/clusterrole.yaml`` is generated from :data:`CLUSTER_ROLE_RULES`
  (:data:`REQUIRED_RULES` plus :data:`PEERING_RULES`;
  ``python -m stackforge_operator.manifestgen``), and
  ``manifests/kubelet-reader.yaml`` from :data:`KUBELET_READER_RULES` and
  :data:`OPERATOR_NAMESPACE_RULES`; a unit test fails when a committed file drifts;
- ``tests/unit/test_manifests.py`` scans the package for the API calls it makes
  (``kube.*`` calls, kopf handlers) and checks each one is allowed here;
- the operator grants no rights to anyone: it makes no Role or RoleBinding
  (the drill sandbox's runner has no token: builders/drill.py), so it holds no
  right to make them, which would let a stolen token of its bind its own rights
  to any identity in any namespace.

Why a ClusterRole rather than Roles: tenants are created in namespaces, and
drill sandboxes are created at run time, whose names are not known when the
operator is installed. The alternative, the operator binding a per-namespace Role to itself
in each namespace it creates, needs ``bind`` on that role, plus RoleBinding
create rights in every namespace: that is as powerful as holding the rules
cluster-wide, and more moving parts. What keeps the grant small is the verb
lists: exact verbs per resource, no wildcards, no ``update`` (writes are
server-side apply, i.e. ``patch``; the one exception is the virtual
``<kind>/finalizers`` check for ``blockOwnerDeletion``), ``watch`` only where
something watches.

Server-side apply of an object that does not exist yet creates it, and the API
server then checks ``create`` as well as ``patch``: every applied kind has both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from stackforge_operator import API_GROUP, API_VERSION

# The verbs an applied (server-side apply) and pruned child needs.
_APPLIED: Final = ("get", "list", "create", "patch", "delete")
_APPLIED_WATCHED: Final = ("get", "list", "watch", "create", "patch", "delete")
# A drill sandbox's objects, read and applied one by one; its Namespace deletes them.
_SANDBOX_APPLIED: Final = ("get", "create", "patch")

# Verbs that would let the operator hand out rights it does not hold, or act
# as someone else: never granted (tested).
FORBIDDEN_VERBS: Final = frozenset({"*", "escalate", "bind", "impersonate"})

# The ClusterKopfPeering object used with `stackforge-operator run --peering`.
PEERING_NAME: Final = "stackforge"


@dataclass(frozen=True)
class Rule:
    """One RBAC PolicyRule, with the reason it exists (rendered as a comment)."""

    group: str  # "" is the core group
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    resource_names: tuple[str, ...] = ()

    def as_policy_rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "apiGroups": [self.group],
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }
        if self.resource_names:
            rule["resourceNames"] = list(self.resource_names)
        return rule


REQUIRED_RULES: Final[tuple[Rule, ...]] = (
    # --- the operator's own kinds -------------------------------------------------
    Rule(API_GROUP, ("stackforgetenants",), ("get", "list", "watch"),
         "kopf watches tenants; BackupPolicy and DRDrill resolve their tenantRef"),
    Rule(API_GROUP, ("backuppolicies", "drdrills"), ("get", "list", "watch"),
         "watched by kopf (event handlers only: no finalizer, no progress annotations, as "
         "for tenants), listed by the tenant's BackupHealthy/DrillPassing"),
    Rule(API_GROUP, ("stackforgetenants/status", "backuppolicies/status", "drdrills/status"),
         ("patch",),
         "status is written as a merge patch of the status subresource"),
    Rule(API_GROUP,
         ("stackforgetenants/finalizers", "backuppolicies/finalizers", "drdrills/finalizers"),
         ("update",),
         "children name their owner with blockOwnerDeletion; where the "
         "OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift, hardened "
         "clusters) that needs update on the owner's finalizers; grants nothing else"),
    # --- tenant children (reconcile/tenant.py MANAGED_KINDS) ------------------------
    Rule("", ("namespaces",), _APPLIED_WATCHED,
         "drill sandboxes are applied, and the labels (Pod Security, tenant) of each tenant's "
         "namespace; a namespace change wakes its tenant; delete only for drill sandboxes "
         "(a tenant never deletes the namespace it lives in)"),
    Rule("", ("secrets",), _APPLIED_WATCHED,
         "generated credentials are applied and pruned; referenced Secrets (S3 keys and CA, "
         "TLS, notification URLs, image pull secrets) are read, and copied into drill "
         "sandboxes; list and watch (the watch cache) only with the operator's label "
         "selector, so it never holds every Secret of the cluster; watch grants no more "
         "than list already does"),
    Rule("", ("configmaps", "services"), _APPLIED_WATCHED,
         "component configuration and Services; changes wake the tenant"),
    Rule("", ("resourcequotas", "limitranges"), _APPLIED_WATCHED,
         "the tier's quota and default limits in each tenant namespace; watched by the "
         "watch cache"),
    Rule("", ("persistentvolumeclaims",), ("get", "list", "patch"),
         "grow claims when a component's storage grows (StatefulSet templates are "
         "immutable); never create: StatefulSets create their claims; never delete: "
         "the volumes an in-place recovery leaves are a person's to delete"),
    Rule("apps", ("deployments", "statefulsets"), _APPLIED_WATCHED,
         "component workloads; rollout progress wakes the tenant"),
    Rule("networking.k8s.io", ("networkpolicies",), _APPLIED_WATCHED,
         "tenant isolation policies, each BackupPolicy's runner and archive egress, drill "
         "sandbox isolation; a tampered policy wakes the tenant"),
    Rule("networking.k8s.io", ("ingresses",), _APPLIED_WATCHED,
         "the tenant's domain through Kong; watched by the watch cache"),
    Rule("policy", ("poddisruptionbudgets",), _APPLIED_WATCHED,
         "PDBs of replicated components; watched by the watch cache"),
    Rule("autoscaling", ("horizontalpodautoscalers",), _APPLIED_WATCHED,
         "app autoscaling; watched by the watch cache"),
    Rule("cert-manager.io", ("certificates",), _APPLIED_WATCHED,
         "the domain's Certificate when cert-manager is installed; watched by the watch cache"),
    Rule("monitoring.coreos.com", ("prometheusrules", "servicemonitors"), _APPLIED_WATCHED,
         "per-tenant alert rules and scrape targets when the Prometheus Operator is "
         "installed; watched by the watch cache"),
    # --- backups and drills ---------------------------------------------------------
    Rule("batch", ("cronjobs",), _APPLIED, "a CronJob per BackupPolicy"),
    Rule("batch", ("jobs",), _APPLIED_WATCHED,
         "on-demand backup Jobs and drill restore Jobs; a finished Job wakes its owner"),
    Rule("", ("pods",), ("get", "list", "watch", "delete", "patch"),
         "read the runner pods' termination messages (backup and drill results) and, while "
         "a component is not ready, its pods' reasons (ImagePullBackOff, OOMKilled, ...); "
         "delete: a StatefulSet pod broken by the previous template, which the set never "
         "replaces by itself; patch: the primary's physical-backup request annotation, "
         "which its archiver sidecar reads through the downward API, and its "
         "stackforge.io/live-files annotation, which has the kubelet write its ConfigMap "
         "and Secret files at once; get: the "
         "operator reads its own Pod once at start-up, to run backup and drill Jobs from the "
         "image it runs itself (image_catalog.py); watch: the watch cache of tenants' pods "
         "(their label selector)"),
    Rule("metrics.k8s.io", ("pods",), ("list",),
         "status.usage: what a tenant's pods use, when the cluster serves the metrics API "
         "(metrics-server)"),
    Rule("storage.k8s.io", ("storageclasses",), ("get",),
         "a DRDrill's spec.sandbox.storageClassName: a class that retains released "
         "volumes would keep every run's restored copy of the tenant's data"),
    Rule("", ("nodes",), ("get",),
         "status.usage's volume figures: the address and port of the kubelet of a node "
         "running a tenant pod that mounts a claim"),
    Rule("apiregistration.k8s.io", ("apiservices",), ("list", "watch"),
         "whether the cluster serves the metrics API, from the metadata of its APIService: "
         "one registered or becoming available wakes every settled tenant to read its "
         "measured use, and while none is, the metrics API is never asked"),
    Rule("discovery.k8s.io", ("endpointslices",), ("list",),
         "a BackupPolicy whose endpoint is a cluster Service name: its endpoints' addresses "
         "and ports go into the egress policies (they are matched after the Service's "
         "translation)"),
    Rule("", ("serviceaccounts",), _SANDBOX_APPLIED,
         "the drill sandbox's ServiceAccount (read and applied, never listed nor deleted: "
         "it goes with its sandbox's Namespace)"),
    # --- platform -------------------------------------------------------------------
    Rule("", ("events",), ("create", "list"),
         "condition transitions and kopf's warnings are posted as core/v1 Events; list: an "
         "isolated tenant's namespace events go into its evidence bundle"),
    Rule("", ("pods/log",), ("get",),
         "an isolated tenant's containers' last log lines go into its evidence bundle "
         "(the runbook's security incident: capture logs and evidence)"),
    Rule("apiextensions.k8s.io", ("customresourcedefinitions",), ("get", "list", "watch"),
         "get: detect cert-manager and the Prometheus Operator; list/watch: kopf's resource "
         "scanning (it serves CRDs that appear or change while it runs)"),
)

# For `stackforge-operator run --peering=stackforge`: the shipped Deployment
# runs two replicas that way (HA). A cluster-wide operator peers through
# ClusterKopfPeering in kopf.dev: kopf lists and watches the kind (it cannot
# watch one name) and merge-patches its keep-alive into the status of its own
# object (the CRD has no status subresource). It never reads the object with
# get, nor creates it: the object ships in manifests/peering.yaml.
PEERING_RULES: Final[tuple[Rule, ...]] = (
    Rule("kopf.dev", ("clusterkopfpeerings",), ("list", "watch"),
         "kopf peering (two replicas, one active): kopf watches the peering objects to see "
         "the other replicas"),
    Rule("kopf.dev", ("clusterkopfpeerings",), ("patch",),
         "kopf writes this replica's keep-alive into its own peering object", (PEERING_NAME,)),
)

# The generated ClusterRole (manifests/clusterrole.yaml): the shipped Deployment peers.
CLUSTER_ROLE_RULES: Final[tuple[Rule, ...]] = (*REQUIRED_RULES, *PEERING_RULES)

# Who reads the kubelets' statistics. Not the operator's own account: a bearer
# token sent to a kubelet is a token that kubelet's node holds from then on, and
# the operator's reaches Secrets and workloads in every namespace. The operator
# requests a short-lived token of this ServiceAccount (TokenRequest, in its own
# namespace) for those reads, so a node taken over learns a token that can read
# node statistics and nothing else.
KUBELET_READER: Final = "stackforge-kubelet-reader"
KUBELET_READER_TOKEN_SECONDS: Final = 600  # the API server's shortest
KUBELET_READER_RULES: Final[tuple[Rule, ...]] = (
    Rule("", ("nodes/stats",), ("get",),
         "status.usage's volume figures: a kubelet's /stats/summary, asked of the kubelet "
         "itself, which authorises it as nodes/stats (not nodes/proxy, which reaches every "
         "kubelet endpoint, exec included)"),
)
# A Role in the operator's namespace (not its ClusterRole): tokens of the reader
# only, not of any ServiceAccount of that name elsewhere.
OPERATOR_NAMESPACE_RULES: Final[tuple[Rule, ...]] = (
    Rule("", ("serviceaccounts/token",), ("create",),
         "a short-lived token of the kubelet reader, the one identity the operator shows "
         "a kubelet", resource_names=(KUBELET_READER,)),
)

# What `kubectl stackforge` needs, for the people on call who run it
# (manifests/plugin/clusterrole.yaml), in two ClusterRoles. PLUGIN_USER_ROLE reads
# and asks (bind it cluster-wide, or per tenant namespace and `-n`).
# PLUGIN_SHELL_ROLE opens a shell in a pod and forwards its ports (health's
# checks, psql): bound only with a RoleBinding in each tenant's namespace, never
# cluster-wide, where it reached every pod of the cluster: the operator's own,
# whose token holds the operator's role, and kube-system's. Not the operator's
# own grants: it never holds pods/exec. No Secrets: `report` leaves the kind out
# of its bundle when it may not list it (its values would be redacted anyway).
PLUGIN_USER_ROLE: Final = "stackforge-plugin-user"
PLUGIN_SHELL_ROLE: Final = "stackforge-plugin-shell"
PLUGIN_SHELL_RULES: Final[tuple[Rule, ...]] = (
    Rule("", ("pods/exec",), ("get", "create"),
         "health runs pg_isready, psql and redis-cli in the components' containers; psql. "
         "get too: the client's websocket upgrade is a GET, which the API server authorizes "
         "as get (403 on the real node with create alone)"),
    Rule("", ("pods/portforward",), ("get", "create"),
         "health's HTTP checks (Kong, Consul, the apps' health paths, Kafka's exporter) reach "
         "a pod's own port; get for the websocket upgrade, as for exec"),
)
PLUGIN_USER_RULES: Final[tuple[Rule, ...]] = (
    Rule(API_GROUP, ("stackforgetenants",), ("get", "list", "patch"),
         "status reads tenants; isolate and unisolate patch spec.isolate; restore writes its "
         "two recovery annotations"),
    Rule(API_GROUP, ("backuppolicies",), ("get", "list", "patch"),
         "status shows them; backup writes the backup-now annotation"),
    Rule(API_GROUP, ("drdrills",), ("get", "list", "create"),
         "drill creates a one-off copy of the tenant's drill and reads its verdict"),
    Rule("", ("pods",), ("get", "list"), "health, psql and report find the tenant's pods"),
    Rule("", ("pods/log",), ("get",), "report: the containers' and the operator's last lines"),
    Rule("apps", ("deployments", "statefulsets"), ("list",),
         "health compares ready pods with the replicas wanted; report"),
    Rule("batch", ("jobs",), ("list",), "backup --wait follows its Job; report"),
    Rule("", ("events", "configmaps", "services", "persistentvolumeclaims", "serviceaccounts",
              "resourcequotas", "limitranges"), ("list",), "report"),
    Rule("batch", ("cronjobs",), ("list",), "report"),
    Rule("networking.k8s.io", ("networkpolicies",), ("list",), "report"),
    Rule("policy", ("poddisruptionbudgets",), ("list",), "report"),
    Rule("autoscaling", ("horizontalpodautoscalers",), ("list",), "report"),
    Rule("rbac.authorization.k8s.io", ("roles", "rolebindings"), ("list",), "report"),
)

# (apiVersion, kind) -> (API group, plural) for every kind the operator touches.
# Lets tests turn a `kube.get("v1", "Secret", ...)` call into an RBAC question.
RESOURCES: Final[Mapping[tuple[str, str], tuple[str, str]]] = {
    (f"{API_GROUP}/{API_VERSION}", "StackForgeTenant"): (API_GROUP, "stackforgetenants"),
    (f"{API_GROUP}/{API_VERSION}", "BackupPolicy"): (API_GROUP, "backuppolicies"),
    (f"{API_GROUP}/{API_VERSION}", "DRDrill"): (API_GROUP, "drdrills"),
    ("v1", "Namespace"): ("", "namespaces"),
    ("v1", "Secret"): ("", "secrets"),
    ("v1", "ConfigMap"): ("", "configmaps"),
    ("v1", "Service"): ("", "services"),
    ("v1", "ResourceQuota"): ("", "resourcequotas"),
    ("v1", "LimitRange"): ("", "limitranges"),
    ("v1", "PersistentVolumeClaim"): ("", "persistentvolumeclaims"),
    ("v1", "Pod"): ("", "pods"),
    ("v1", "Node"): ("", "nodes"),
    ("storage.k8s.io/v1", "StorageClass"): ("storage.k8s.io", "storageclasses"),
    ("v1", "ServiceAccount"): ("", "serviceaccounts"),
    ("v1", "Event"): ("", "events"),
    ("metrics.k8s.io/v1beta1", "PodMetrics"): ("metrics.k8s.io", "pods"),
    ("discovery.k8s.io/v1", "EndpointSlice"): ("discovery.k8s.io", "endpointslices"),
    ("apps/v1", "Deployment"): ("apps", "deployments"),
    ("apps/v1", "StatefulSet"): ("apps", "statefulsets"),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networking.k8s.io", "networkpolicies"),
    ("networking.k8s.io/v1", "Ingress"): ("networking.k8s.io", "ingresses"),
    ("policy/v1", "PodDisruptionBudget"): ("policy", "poddisruptionbudgets"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("autoscaling", "horizontalpodautoscalers"),
    ("batch/v1", "CronJob"): ("batch", "cronjobs"),
    ("batch/v1", "Job"): ("batch", "jobs"),
    ("rbac.authorization.k8s.io/v1", "Role"): ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rbac.authorization.k8s.io", "rolebindings"),
    ("cert-manager.io/v1", "Certificate"): ("cert-manager.io", "certificates"),
    ("monitoring.coreos.com/v1", "PrometheusRule"): ("monitoring.coreos.com", "prometheusrules"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("monitoring.coreos.com", "servicemonitors"),
    ("apiregistration.k8s.io/v1", "APIService"): ("apiregistration.k8s.io", "apiservices"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"):
        ("apiextensions.k8s.io", "customresourcedefinitions"),
}


def resource_of(api_version: str, kind: str) -> tuple[str, str]:
    """(group, plural) of a kind; KeyError names the kind to add to RESOURCES."""
    try:
        return RESOURCES[(api_version, kind)]
    except KeyError:
        raise KeyError(f"{api_version} {kind}: add it to rbac.RESOURCES") from None


def allows(
    rules: Iterable[Rule], group: str, resource: str, verb: str, name: str | None = None
) -> bool:
    """Whether ``rules`` allow ``verb`` on ``group``/``resource`` (RBAC's own matching).

    A rule with resourceNames only matches a request for one of those names,
    so an unnamed request (list, watch, create) never matches it.
    """
    for rule in rules:
        if rule.group != group or resource not in rule.resources or verb not in rule.verbs:
            continue
        if not rule.resource_names or (name is not None and name in rule.resource_names):
            return True
    return False


def policy_rules(rules: Sequence[Rule]) -> list[dict[str, Any]]:
    """The rules as Kubernetes PolicyRule dicts (for a Role or ClusterRole)."""
    return [rule.as_policy_rule() for rule in rules]


