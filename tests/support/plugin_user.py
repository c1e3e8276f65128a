"""A person on call as `kubectl stackforge` sees the cluster: a ServiceAccount
bound to exactly the shipped ClusterRoles of manifests/plugin/clusterrole.yaml
(the user's cluster-wide, the shell's in the tenant namespaces given), and a
kubeconfig with its token. The API server enforces RBAC, so a command that needs
a permission the roles lack fails the tests that run it as this user."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from tests.support.clusters import ClusterHandle
from tests.support.operator_identity import MANIFESTS, TOKEN_SECONDS, write_kubeconfig

ROLE_FILE = MANIFESTS / "plugin" / "clusterrole.yaml"
NAMESPACE = "stackforge-oncall"


def install(cluster: ClusterHandle, kubeconfig_path: Path, name: str = "oncall",
            *, bound: bool = True, shell_in: Sequence[str] = ()) -> Path:
    """A ServiceAccount ``name`` (bound to the user's role unless ``bound`` is False,
    and to the shell's in each namespace of ``shell_in``) and a kubeconfig for it
    at ``kubeconfig_path``."""
    user_role, shell_role = (d["metadata"]["name"]
                             for d in yaml.safe_load_all(ROLE_FILE.read_text()))
    subjects = [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole"}
    documents: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": NAMESPACE}},
    ]
    if bound:
        documents.append({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{user_role}-{name}"},
            "roleRef": {**role_ref, "name": user_role}, "subjects": subjects})
    documents += [{
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": f"{shell_role}-{name}", "namespace": namespace},
        "roleRef": {**role_ref, "name": shell_role}, "subjects": subjects}
        for namespace in shell_in]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROLE_FILE))
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                    input=yaml.safe_dump_all(documents))
    token = cluster.service_account_token(NAMESPACE, name, TOKEN_SECONDS)
    write_kubeconfig(cluster.kubeconfig, kubeconfig_path, token)
    return kubeconfig_path
