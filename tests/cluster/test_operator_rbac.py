"""The operator runs with manifests/' least-privilege identity, which is not cluster-admin.

Every operator the cluster tests start (tests/conftest.py) authenticates with a
token of manifests/serviceaccount.yaml, bound to the generated ClusterRole (so
does the real-node operator, tests/realnode/conftest.py). The tenant tests and
the real-node backup and drill tests (tests/realnode/test_backup_runs.py,
test_drill_runs.py) are therefore the whole tenant → backup → drill flow under
exactly that RBAC; this module checks that the identity is really the one in use
and that it is narrow.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support.clusters import ClusterHandle
from tests.support.operator_identity import MANIFESTS, OperatorIdentity

# What a cluster-admin can do and a least-privilege operator must not.
FORBIDDEN = (
    ("*", "*", None),
    ("create", "clusterrolebindings", None),
    ("create", "clusterroles", None),
    ("escalate", "clusterroles", None),
    ("bind", "clusterroles", None),
    ("impersonate", "users", None),
    ("impersonate", "serviceaccounts", "kube-system"),
    ("delete", "nodes", None),
    ("create", "pods/exec", "kube-system"),
    ("create", "pods", "kube-system"),
    ("delete", "persistentvolumeclaims", "default"),
    ("create", "customresourcedefinitions", None),
    ("patch", "validatingwebhookconfigurations", None),
    # Reading Secrets is granted (list, and watch for its watch cache, which selects
    # only its own by label: tests/unit/test_manifests.py); update never (its writes
    # are server-side apply).
    ("update", "secrets", "kube-system"),
    ("delete", "stackforgetenants.stackforge.io", None),
)
# A sample of what it needs, to show the binding is in effect at all.
ALLOWED = (
    ("patch", "stackforgetenants.stackforge.io/status", None),
    ("create", "statefulsets.apps", "tenant-any"),
    ("create", "cronjobs.batch", "tenant-any"),
    ("create", "events", "tenant-any"),
    ("watch", "drdrills.stackforge.io", None),
)


def _can_i(cluster: ClusterHandle, identity: OperatorIdentity, verb: str, resource: str,
           namespace: str | None) -> str:
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    resource, _, subresource = resource.partition("/")
    if subresource:
        scope.append(f"--subresource={subresource}")
    answer = cluster.kubectl("auth", "can-i", verb, resource, *scope,
                             kubeconfig=identity.kubeconfig, check=False)
    return answer.stdout.strip()


def test_the_operator_fixture_authenticates_as_the_manifests_service_account(
    cluster: ClusterHandle, operator_identity_installed: OperatorIdentity,
    operator: OperatorProcess,
) -> None:
    whoami = cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}",
                             kubeconfig=operator_identity_installed.kubeconfig)
    assert whoami.stdout == operator_identity_installed.username
    assert operator_identity_installed.username == (
        "system:serviceaccount:stackforge-system:stackforge-operator")
    # The running operator really uses that kubeconfig, not the admin one.
    popen = operator.process.popen
    assert popen is not None
    environ = Path(f"/proc/{popen.pid}/environ").read_bytes().split(b"\0")
    assert f"KUBECONFIG={operator_identity_installed.kubeconfig}".encode() in environ
    assert os.fspath(cluster.kubeconfig).encode() not in b"\0".join(environ)


@pytest.mark.parametrize(("verb", "resource", "namespace"), FORBIDDEN)
def test_the_operator_is_not_cluster_admin(
    cluster: ClusterHandle, operator_identity_installed: OperatorIdentity,
    verb: str, resource: str, namespace: str | None,
) -> None:
    assert _can_i(cluster, operator_identity_installed, verb, resource, namespace) == "no"


@pytest.mark.parametrize(("verb", "resource", "namespace"), ALLOWED)
def test_the_operator_has_what_it_needs(
    cluster: ClusterHandle, operator_identity_installed: OperatorIdentity,
    verb: str, resource: str, namespace: str | None,
) -> None:
    assert _can_i(cluster, operator_identity_installed, verb, resource, namespace) == "yes"


def test_no_wildcard_in_what_the_api_server_grants_the_operator(
    cluster: ClusterHandle, operator_identity_installed: OperatorIdentity,
) -> None:
    listed = cluster.kubectl("auth", "can-i", "--list", "-n", "tenant-any",
                             kubeconfig=operator_identity_installed.kubeconfig).stdout
    rows = [line.split() for line in listed.splitlines()[1:] if line.strip()]
    granted = {row[0] for row in rows}
    # Every rule of the shipped ClusterRole shows up as granted by the API server ...
    shipped = yaml.safe_load((MANIFESTS / "clusterrole.yaml").read_text())
    for rule in shipped["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                base, slash, subresource = resource.partition("/")
                name = (f"{base}.{group}" if group else base) + slash + subresource
                assert name in granted, (name, sorted(granted))
    # ... and nothing anywhere is granted with a wildcard verb or resource.
    for row in rows:
        assert not row[0].startswith("*"), row
        assert "[*]" not in row[-1], row
