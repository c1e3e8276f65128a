"""A person on call as `kubectl stackforge` sees the cluster: a ServiceAccount
bound to exactly the shipped ClusterRole manifests/plugin/clusterrole.yaml, and a
kubeconfig with its token. The API server enforces RBAC, so a command that needs
a permission the role lacks fails the tests that run it as this user."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.clusters import ClusterHandle
from tests.support.operator_identity import MANIFESTS, TOKEN_SECONDS, write_kubeconfig

ROLE_FILE = MANIFESTS / "plugin" / "clusterrole.yaml"
NAMESPACE = "stackforge-oncall"


def install(cluster: ClusterHandle, kubeconfig_path: Path, name: str = "oncall",
            *, bound: bool = True) -> Path:
    """A ServiceAccount ``name`` (bound to the role unless ``bound`` is False) and a
    kubeconfig for it at ``kubeconfig_path``."""
    role = yaml.safe_load(ROLE_FILE.read_text())["metadata"]["name"]
    documents: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": NAMESPACE}},
    ]
    if bound:
        documents.append({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{role}-{name}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]})
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROLE_FILE))
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                    input=yaml.safe_dump_all(documents))
    token = cluster.service_account_token(NAMESPACE, name, TOKEN_SECONDS)
    write_kubeconfig(cluster.kubeconfig, kubeconfig_path, token)
    return kubeconfig_path
