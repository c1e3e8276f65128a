"""metrics-server on the real node: the metrics API (``metrics.k8s.io``) that a
tenant's measured CPU and memory come from (status.usage).

It runs as production clusters run it: a pod in kube-system, behind the
``metrics-server`` Service, registered as the ``v1beta1.metrics.k8s.io``
APIService of the aggregation layer (the API server's front-proxy identity:
cluster.py). It scrapes the kubelet's ``/metrics/resource`` with its service
account's token (the kubelet asks the API server: webhook authentication and
``nodes/metrics`` authorisation) and checks the kubelet's serving certificate
against the cluster CA, which signed it; no ``--kubelet-insecure-tls``.

Installed on demand (``install``/``remove``), not with the node: while an
aggregated API is registered but unavailable (its pod restarting with the
node, in the tests that stop the kubelet), the namespace controller cannot
list every kind and leaves deleted namespaces Terminating, and discovery
warns on every kubectl call. ``dev`` installs it without waiting (the
operator sees the APIService become available by itself), so that
``kubectl top`` and the tenant's measured use work there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from stackforge_operator.devcluster.node.services import (
    DNS_NAMESPACE,
    LOCKED_DOWN_CONTAINER,
    NOBODY_POD,
    addon_deployment,
)

if TYPE_CHECKING:
    from stackforge_operator.devcluster.cluster import LocalCluster

METRICS_SERVER_VERSION = "v0.8.0"
METRICS_SERVER_IMAGE = f"localhost/stackforge/metrics-server:{METRICS_SERVER_VERSION}"
API_SERVICE = "v1beta1.metrics.k8s.io"
NAME = "metrics-server"
FIELD_MANAGER = "stackforge-devcluster"
# Its shortest allowed scrape interval: status.usage shows measured figures
# within two scrapes (CPU is a rate of two samples).
METRIC_RESOLUTION = "10s"
_PORT = 4443
_CA_FROM_SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


def _binding(kind: str, name: str, role_kind: str, role: str,
             namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, str] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": DNS_NAMESPACE}],
    }


def _deployment(labels: dict[str, str]) -> dict[str, Any]:
    return addon_deployment(NAME, labels, {
        "securityContext": dict(NOBODY_POD),
        "containers": [{
            "name": NAME,
            "image": METRICS_SERVER_IMAGE,
            "imagePullPolicy": "Never",
            "args": [
                # Its own serving certificate, self-signed, written here; the
                # APIService skips verifying it, as upstream's does.
                "--cert-dir=/certs",
                f"--secure-port={_PORT}",
                "--kubelet-preferred-address-types=InternalIP",
                # The kubelet's port is the one its Node status names (the real
                # node's is not 10250).
                "--kubelet-use-node-status-port",
                f"--kubelet-certificate-authority={_CA_FROM_SERVICE_ACCOUNT}",
                f"--metric-resolution={METRIC_RESOLUTION}",
                # Shorter than the resolution, which it must be.
                "--kubelet-request-timeout=5s",
            ],
            "ports": [{"name": "https", "containerPort": _PORT, "protocol": "TCP"}],
            # Ready once it has stored a first scrape.
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "https",
                                           "scheme": "HTTPS"},
                               "periodSeconds": 2, "failureThreshold": 3},
            "livenessProbe": {"httpGet": {"path": "/livez", "port": "https",
                                          "scheme": "HTTPS"},
                              "periodSeconds": 10, "failureThreshold": 3},
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                          "limits": {"memory": "256Mi"}},
            "securityContext": dict(LOCKED_DOWN_CONTAINER),
            "volumeMounts": [{"name": "certs", "mountPath": "/certs"}],
        }],
        "volumes": [{"name": "certs", "emptyDir": {}}],
    })


def manifests() -> list[dict[str, Any]]:
    """Its account, rights, Deployment, Service and APIService."""
    labels = {"k8s-app": NAME}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": NAME, "namespace": DNS_NAMESPACE, "labels": labels}},
        # Read through the metrics API by whoever may view (kubectl top).
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:aggregated-metrics-reader",
                      "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true",
                                 "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                                 "rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
         "rules": [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:metrics-server"},
         "rules": [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                   {"apiGroups": [""], "resources": ["pods", "nodes"],
                    "verbs": ["get", "list", "watch"]}]},
        _binding("ClusterRoleBinding", "system:metrics-server", "ClusterRole",
                 "system:metrics-server"),
        # Delegated authentication and authorisation of the callers the API
        # server forwards: the front proxy's CA from this ConfigMap's Role, the
        # callers' rights through SubjectAccessReviews.
        _binding("RoleBinding", "metrics-server-auth-reader", "Role",
                 "extension-apiserver-authentication-reader", DNS_NAMESPACE),
        _binding("ClusterRoleBinding", "metrics-server:system:auth-delegator", "ClusterRole",
                 "system:auth-delegator"),
        _deployment(labels),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": NAME, "namespace": DNS_NAMESPACE, "labels": labels},
         "spec": {"selector": labels,
                  "ports": [{"name": "https", "port": 443, "targetPort": "https",
                             "protocol": "TCP"}]}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": API_SERVICE, "labels": labels},
         "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                  "service": {"name": NAME, "namespace": DNS_NAMESPACE, "port": 443},
                  "insecureSkipTLSVerify": True,
                  "groupPriorityMinimum": 100, "versionPriority": 100}},
    ]


def install(cluster: LocalCluster, timeout: float = 120, *, wait: bool = True) -> None:
    """Apply it and (``wait``) wait until the API server serves the metrics API
    (its APIService Available: the pod is ready, so it has stored a first scrape)."""
    if cluster.node is None:
        raise ValueError("metrics-server needs a cluster with a real node")
    cluster.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
                    "-f", "-", input=yaml.safe_dump_all(manifests()))
    if not wait:
        return
    waited = cluster.kubectl("wait", "--for=condition=Available", f"apiservice/{API_SERVICE}",
                             f"--timeout={int(timeout)}s", check=False, timeout=timeout + 10)
    if waited.returncode != 0:
        pods = cluster.kubectl("get", "pods", "-n", DNS_NAMESPACE, "-l", f"k8s-app={NAME}",
                               "-o", "wide", check=False).stdout
        logs = cluster.kubectl("logs", "-n", DNS_NAMESPACE, f"deployment/{NAME}",
                               "--tail=30", check=False).stdout
        raise RuntimeError(f"the metrics API did not become available: "
                           f"{waited.stderr.strip()}\n{pods}\n{logs}")


def remove(cluster: LocalCluster) -> None:
    """Delete it, the APIService first: from then on nothing waits on it."""
    documents = list(reversed(manifests()))
    cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-",
                    input=yaml.safe_dump_all(documents))
