"""A real, local Kubernetes control plane for tests and local runs.

etcd, kube-apiserver (RBAC on), kube-controller-manager, kube-scheduler and
kwok run as processes of one Go binary built from ``tests/controlplane``;
kwok's fake nodes make pods Running/Ready without a container runtime.
"""

from stackforge_operator.devcluster.cluster import LocalCluster, StartupTimings

__all__ = ["LocalCluster", "StartupTimings"]
