"""What a converged tenant owns on a cluster, checked against what its spec asks for.

Used where something was interrupted (the operator killed, the API server or etcd
restarted): in the end every child exists exactly once, owned by its tenant, and
nothing else is left.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml
from kubernetes import client

from stackforge_operator.builders import credentials, stack
from stackforge_operator.builders.backup import POLICY_LABEL
from stackforge_operator.builders.common import TENANT_LABEL
from stackforge_operator.builders.secrets_names import POSTGRES_ADMIN_ROLES_SECRET
from stackforge_operator.models.effective import resolve
from stackforge_operator.models.tenant import StackForgeTenantSpec
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import metadata_of, name_of

KINDS = ("secrets,configmaps,services,resourcequotas,limitranges,deployments,statefulsets,"
          "networkpolicies,poddisruptionbudgets,horizontalpodautoscalers,ingresses")


def expected(name: str, spec: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every child the spec asks for, its namespace aside."""
    t = resolve(name, StackForgeTenantSpec.model_validate(spec),
                namespace=tenants.namespace_of(name))
    names = list(credentials.wanted_keys(t))
    if t.postgres.enabled:
        # Written by the reconcile beside the credentials (reconcile/tenant.py).
        names.append(POSTGRES_ADMIN_ROLES_SECRET)
    secrets = [{"kind": "Secret", "metadata": {"name": n}} for n in names]
    children = stack.desired_children(t, secrets=secrets, tls=None, rotation=None)
    return {(m["kind"], m["metadata"]["name"]) for m in children if m["kind"] != "Namespace"}


def live(cluster: ClusterHandle, name: str) -> list[dict[str, Any]]:
    """The objects labelled as the tenant's in its namespace (not its BackupPolicies'
    children, which carry its label too but are theirs)."""
    out = cluster.kubectl("get", KINDS, "-n", tenants.namespace_of(name), "-l",
                          f"{TENANT_LABEL}={name},!{POLICY_LABEL}", "-o", "yaml").stdout
    items: list[dict[str, Any]] = yaml.safe_load(out)["items"]
    return items


def problems(cluster: ClusterHandle, manifest: dict[str, Any]) -> list[str]:
    """What is wrong with the children of a converged tenant (empty when nothing):
    a child missing or extra, one twice, one not owned by exactly this tenant, a
    Deployment whose pod template changed (more than one ReplicaSet)."""
    name = manifest["metadata"]["name"]
    tenant = tenants.get(cluster, name)
    if tenant is None:
        return [f"{name}: the tenant is gone"]
    uid = tenant["metadata"]["uid"]
    found = live(cluster, name)
    keys = Counter((o["kind"], o["metadata"]["name"]) for o in found)
    wanted = expected(name, manifest["spec"])
    out = []
    if set(keys) != wanted:
        out.append(f"{name}: missing {sorted(wanted - set(keys))}, "
                   f"extra {sorted(set(keys) - wanted)}")
    out += [f"{name}: {key} {count} times" for key, count in keys.items() if count > 1]
    for obj in found:
        owners = obj["metadata"].get("ownerReferences") or []
        if [o["uid"] for o in owners] != [uid]:
            out.append(f"{name}: {obj['kind']}/{obj['metadata']['name']} owned by {owners}")
    replica_sets = client.AppsV1Api(cluster.api).list_namespaced_replica_set(
        tenants.namespace_of(name)).items
    per_deployment = Counter((metadata_of(rs).owner_references or [])[0].name
                             for rs in replica_sets)
    if not per_deployment:
        out.append(f"{name}: no ReplicaSet")
    out += [f"{name}: Deployment {d} has {n} ReplicaSets (its pod template changed)"
            for d, n in per_deployment.items() if n > 1]
    return out


def policy_jobs(cluster: ClusterHandle, namespace: str, policy: str) -> tuple[list[Any], list[str]]:
    """A BackupPolicy's own Jobs (its on-demand runs; not the Jobs its CronJob starts,
    which are the controller-manager's, one per slot by name) and its CronJobs' names."""
    batch = client.BatchV1Api(cluster.api)
    selector = f"{POLICY_LABEL}={policy}"
    jobs = [j for j in batch.list_namespaced_job(namespace, label_selector=selector).items
            if not any(o.kind == "CronJob" for o in metadata_of(j).owner_references or [])]
    crons = [name_of(c) for c in batch.list_namespaced_cron_job(
        namespace, label_selector=selector).items]
    return jobs, crons
