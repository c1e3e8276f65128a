"""Services on the real node: kube-proxy (host process) and cluster DNS (a pod).

CoreDNS runs as a pod in kube-system labelled ``k8s-app: kube-dns`` behind the
``kube-dns`` Service, exactly where a production cluster has it, so a
tenant's NetworkPolicy that allows DNS to kube-system's kube-dns pods is
tested as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stackforge_operator.devcluster.node.network import NodeNetwork

COREDNS_VERSION = "1.15.0"
# Images of the test cluster only, made from static binaries (scratch_image).
COREDNS_IMAGE = f"localhost/stackforge/coredns:{COREDNS_VERSION}"
PAUSE_IMAGE = "localhost/stackforge/pause:catatonit"
# The tenant app of the real-node tests (tests/controlplane/cmd/testapp).
TESTAPP_IMAGE = "localhost/stackforge/testapp:1"
TESTAPP_ROOT_IMAGE = "localhost/stackforge/testapp:root"
DNS_NAMESPACE = "kube-system"
# The securityContext of every add-on container the node runs in kube-system.
LOCKED_DOWN_CONTAINER = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                         "capabilities": {"drop": ["ALL"]}}

COREFILE = """\
.:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
"""


def kube_proxy_configuration(
    *, network: NodeNetwork, kubeconfig: Path, node_name: str, healthz_port: int,
    metrics_port: int,
) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": network.cluster_cidr,
        "hostnameOverride": node_name,
        "bindAddress": network.node_ip,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        # Lowering its OOM score needs CAP_SYS_RESOURCE, which this host lacks.
        "oomScoreAdj": 0,
        # Zeros leave the host's conntrack limits and timeouts as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
        # NodePorts on 127.0.0.1 would need route_localnet=1 on the host.
        "iptables": {"localhostNodePorts": False, "syncPeriod": "5s", "minSyncPeriod": "0s"},
        "nodePortAddresses": [f"{network.node_ip}/32"],
    }


NOBODY_POD = {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
              "seccompProfile": {"type": "RuntimeDefault"}}


def addon_deployment(name: str, labels: dict[str, str], pod_spec: dict[str, Any]
                     ) -> dict[str, Any]:
    """One replica of a kube-system add-on on the real node, as its own account
    (named as it is)."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": DNS_NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"serviceAccountName": name,
                         "priorityClassName": "system-cluster-critical",
                         "nodeSelector": {"type": "real"}, **pod_spec},
            },
        },
    }


def dns_manifests(network: NodeNetwork) -> list[dict[str, Any]]:
    """CoreDNS's account, rights, configuration, Deployment and the kube-dns Service."""
    labels = {"k8s-app": "kube-dns"}
    meta = {"namespace": DNS_NAMESPACE, "labels": labels}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "coredns", **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "stackforge:coredns"},
         "rules": [
             {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
              "verbs": ["list", "watch"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "stackforge:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "stackforge:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns",
                       "namespace": DNS_NAMESPACE}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", **meta},
         "data": {"Corefile": COREFILE}},
        addon_deployment("coredns", labels, {
            # Its own resolver is the host's, never itself.
            "dnsPolicy": "Default",
            # Port 53 without root or capabilities (a safe sysctl).
            "securityContext": {**NOBODY_POD, "sysctls": [
                {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
            "containers": [{
                "name": "coredns",
                "image": COREDNS_IMAGE,
                "imagePullPolicy": "Never",
                "args": ["-conf", "/etc/coredns/Corefile"],
                "ports": [
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                ],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                   "periodSeconds": 2},
                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080},
                                  "periodSeconds": 10, "failureThreshold": 5},
                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                              "limits": {"memory": "128Mi"}},
                "securityContext": dict(LOCKED_DOWN_CONTAINER),
                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
            }],
            "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
        }),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", **meta},
         "spec": {
             "selector": labels,
             "clusterIP": network.dns_service_ip,
             "ports": [
                 {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
                 {"name": "dns-tcp", "port": 53, "targetPort": 53, "protocol": "TCP"},
             ],
         }},
    ]
