"""The NetworkPolicy enforcer: kube-network-policies, as a host-network pod.

Chosen over kube-router's firewall mode because it does one job (enforce
NetworkPolicy, nothing about routing or Services), is what kind runs, sits
beside the plain bridge plugin without owning the CNI, and is one static
binary that talks to nftables over netlink, so its image is the binary alone.
It queues the first packet of each new connection of a pod under a policy to
userspace and accepts or drops it there.
"""

from __future__ import annotations

from typing import Any

ENFORCER_VERSION = "v0.8.0"
ENFORCER_IMAGE = f"localhost/stackforge/kube-network-policies:{ENFORCER_VERSION}"
ENFORCER_NAMESPACE = "kube-system"
ENFORCER_BINARY_IN_IMAGE = "/bin/netpol"


def enforcer_manifests(metrics_port: int) -> list[dict[str, Any]]:
    labels = {"k8s-app": "kube-network-policies"}
    meta = {"namespace": ENFORCER_NAMESPACE, "labels": labels}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "kube-network-policies", **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "stackforge:kube-network-policies"},
         "rules": [
             {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
              "verbs": ["list", "watch"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "stackforge:kube-network-policies"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "stackforge:kube-network-policies"},
         "subjects": [{"kind": "ServiceAccount", "name": "kube-network-policies",
                       "namespace": ENFORCER_NAMESPACE}]},
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"name": "kube-network-policies", **meta},
         "spec": {
             "selector": {"matchLabels": labels},
             "template": {
                 "metadata": {"labels": labels},
                 "spec": {
                     "hostNetwork": True,
                     "serviceAccountName": "kube-network-policies",
                     "priorityClassName": "system-node-critical",
                     "nodeSelector": {"type": "real"},
                     "tolerations": [{"operator": "Exists"}],
                     "containers": [{
                         "name": "kube-network-policies",
                         "image": ENFORCER_IMAGE,
                         "imagePullPolicy": "Never",
                         "command": [ENFORCER_BINARY_IN_IMAGE],
                         "args": [
                             "--hostname-override=$(NODE_NAME)",
                             # Pod addresses come from the API; containerd's NRI is off.
                             "--disable-nri=true",
                             f"--metrics-bind-address=127.0.0.1:{metrics_port}",
                             "--v=2",
                         ],
                         "env": [{"name": "NODE_NAME",
                                  "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                         "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                         # nftables and the nfqueue of the host's network namespace.
                         "securityContext": {"privileged": True,
                                             "capabilities": {"add": ["NET_ADMIN"]}},
                     }],
                 },
             },
         }},
    ]
