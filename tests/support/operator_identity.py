"""The operator's own identity from manifests/: its ServiceAccount and ClusterRole.

The cluster tests run the operator with a kubeconfig holding a token of the
ServiceAccount that `kubectl apply -k manifests/` creates, bound to exactly the
generated ClusterRole. The API server enforces RBAC, so any call the operator
makes that the shipped manifests do not allow fails the tests that exercise it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.clusters import ClusterHandle

REPOSITORY = Path(__file__).resolve().parents[2]
MANIFESTS = REPOSITORY / "manifests"
# The objects that make up the identity, in the order they must exist.
IDENTITY_FILES = (
    "namespace.yaml",
    "serviceaccount.yaml",
    "clusterrole.yaml",
    "clusterrolebinding.yaml",
    "kubelet-reader.yaml",
)
# Long enough for a whole test session; the API server caps it at its own maximum.
TOKEN_SECONDS = 24 * 3600


@dataclass(frozen=True)
class OperatorIdentity:
    namespace: str
    service_account: str
    cluster_role: str
    kubeconfig: Path
    token: str

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def _manifest(name: str) -> dict[str, object]:
    loaded = yaml.safe_load((MANIFESTS / name).read_text())
    assert isinstance(loaded, dict), name
    return loaded


def install(cluster: ClusterHandle, kubeconfig_path: Path) -> OperatorIdentity:
    """Apply the identity manifests as they ship and write a kubeconfig for its token."""
    for name in IDENTITY_FILES:
        cluster.kubectl("apply", "--server-side", "--force-conflicts",
                        "-f", str(MANIFESTS / name))
    account = _manifest("serviceaccount.yaml")["metadata"]
    role = _manifest("clusterrole.yaml")["metadata"]
    assert isinstance(account, dict) and isinstance(role, dict)
    namespace, name = str(account["namespace"]), str(account["name"])
    token = cluster.service_account_token(namespace, name, TOKEN_SECONDS)
    write_kubeconfig(cluster.kubeconfig, kubeconfig_path, token)
    return OperatorIdentity(namespace=namespace, service_account=name,
                            cluster_role=str(role["name"]), kubeconfig=kubeconfig_path,
                            token=token)


def write_kubeconfig(admin_path: Path, path: Path, token: str) -> None:
    """The admin kubeconfig's server and CA, with the ServiceAccount's token as the user."""
    admin = yaml.safe_load(admin_path.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster_entry = next(c for c in admin["clusters"]
                         if c["name"] == context["context"]["cluster"])
    cluster_data = dict(cluster_entry["cluster"])
    # A relative CA path would resolve against the new file's directory.
    ca = cluster_data.get("certificate-authority")
    if ca is not None:
        cluster_data["certificate-authority"] = str((admin_path.parent / ca).resolve())
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster_data}],
        "users": [{"name": "stackforge-operator", "user": {"token": token}}],
        "contexts": [{"name": "operator",
                      "context": {"cluster": "cluster", "user": "stackforge-operator"}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
