"""kube.py against the real API server: apply, read, list, delete, error translation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kubernetes.dynamic.exceptions import NotFoundError

from stackforge_operator import FIELD_MANAGER, kube
from stackforge_operator.reconcile.diff import needs_apply
from tests.support.clusters import ClusterHandle
from tests.support.metrics import request_totals, writes_between
from tests.support.tenants import wait_for_no_terminating_namespace


@pytest.fixture
def operator_credentials(
    cluster: ClusterHandle, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """kube.py reads $KUBECONFIG when it first connects; give it the test cluster's."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    kube.reset_clients()
    yield
    kube.reset_clients()


def _config_map(namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace, "labels": {"app": "x"}},
        "data": data,
    }


@pytest.mark.usefixtures("operator_credentials")
def test_apply_is_owned_by_the_operator_and_converged_resync_writes_nothing(
    cluster: ClusterHandle, namespace: str
) -> None:
    wait_for_no_terminating_namespace(cluster)
    desired = _config_map(namespace, {"mode": "fast"})
    assert kube.get("v1", "ConfigMap", "settings", namespace) is None
    applied = kube.apply(desired)
    managers = {m["manager"] for m in applied["metadata"]["managedFields"]}
    assert FIELD_MANAGER in managers

    before = request_totals(cluster)
    for _ in range(3):
        live = kube.get("v1", "ConfigMap", "settings", namespace)
        if needs_apply(desired, live):
            kube.apply(desired)
    after = request_totals(cluster)
    assert writes_between(before, after, resources=frozenset({"configmaps"})) == {}
    assert (after - before)[("GET", "configmaps", "")] == 3


@pytest.mark.usefixtures("operator_credentials")
def test_hand_edit_is_seen_and_reverted_while_foreign_annotation_stays(
    cluster: ClusterHandle, namespace: str
) -> None:
    desired = _config_map(namespace, {"mode": "fast"})
    kube.apply(desired)
    edit = json.dumps({
        "data": {"mode": "slow"},
        "metadata": {"annotations": {"argocd.argoproj.io/sync-wave": "1"}},
    })
    cluster.kubectl("patch", "configmap", "settings", "-n", namespace, "--type=merge", "-p", edit)
    live = kube.get("v1", "ConfigMap", "settings", namespace)
    assert needs_apply(desired, live)
    kube.apply(desired)
    live = kube.get("v1", "ConfigMap", "settings", namespace)
    assert live is not None
    assert live["data"] == {"mode": "fast"}
    assert live["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "1"


@pytest.mark.usefixtures("operator_credentials")
def test_list_and_delete(namespace: str) -> None:
    kube.apply(_config_map(namespace, {"a": "1"}))
    listed = kube.list_objects("v1", "ConfigMap", namespace=namespace, label_selector="app=x")
    assert [o["metadata"]["name"] for o in listed] == ["settings"]
    assert kube.delete("v1", "ConfigMap", "settings", namespace) is True
    assert kube.delete("v1", "ConfigMap", "settings", namespace) is False


@pytest.mark.usefixtures("operator_credentials")
def test_annotate_sets_and_removes_one_annotation_leaving_the_others(namespace: str) -> None:
    manifest = _config_map(namespace, {"a": "1"})
    manifest["metadata"]["annotations"] = {"someone.else/keep": "yes"}
    kube.apply(manifest)
    kube.annotate("v1", "ConfigMap", "settings", namespace, {"stackforge.io/request": "r1"})
    live = kube.get("v1", "ConfigMap", "settings", namespace)
    assert live is not None
    assert live["metadata"]["annotations"] == {"someone.else/keep": "yes",
                                               "stackforge.io/request": "r1"}
    kube.annotate("v1", "ConfigMap", "settings", namespace, {"stackforge.io/request": None})
    live = kube.get("v1", "ConfigMap", "settings", namespace)
    assert live is not None
    assert live["metadata"]["annotations"] == {"someone.else/keep": "yes"}
    # A pod gone between the read and the write: the reconcile fails and is retried.
    with pytest.raises(NotFoundError):
        kube.annotate("v1", "ConfigMap", "missing", namespace, {"stackforge.io/request": "r"})


@pytest.mark.usefixtures("operator_credentials")
def test_conflicts_become_temporary_errors(namespace: str) -> None:
    kube.apply(_config_map(namespace, {"a": "1"}))
    live = kube.get("v1", "ConfigMap", "settings", namespace)
    assert live is not None
    stale = {**_config_map(namespace, {"a": "2"})}
    stale["metadata"]["resourceVersion"] = str(int(live["metadata"]["resourceVersion"]) - 1)
    with pytest.raises(kopf.TemporaryError, match="applying ConfigMap"):
        kube.apply(stale)


# What a user may write into a value the operator copies into a child: beyond
# U+FFFF (JSON's surrogate pairs, which the API server's YAML parser refuses), the
# characters YAML would read as line breaks, DEL and C1 controls, quotes, backslashes.
AWKWARD_TEXT = {"emoji": "deploy \U0001F680 done", "math": "\U0001D4B3 > 0",
                "breaks": "a\u0085b\u2028c\u2029d", "controls": "x\x7fy\x80z\x1bw",
                "quoted": 'say "\\ud83d" \\U0001F680 \\', "accents": "Zoë, café, 東京"}


@pytest.mark.usefixtures("operator_credentials")
def test_any_text_a_user_writes_is_applied_and_read_back_unchanged(namespace: str) -> None:
    applied = kube.apply(_config_map(namespace, AWKWARD_TEXT))
    assert applied["data"] == AWKWARD_TEXT
    live = kube.get("v1", "ConfigMap", "settings", namespace)
    assert live is not None and live["data"] == AWKWARD_TEXT
    # Converged: the same text is not applied again.
    assert not needs_apply(_config_map(namespace, AWKWARD_TEXT), live)


@pytest.mark.usefixtures("operator_credentials")
def test_an_object_the_api_server_refuses_is_told_apart_from_a_bad_moment(
        namespace: str) -> None:
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "empty", "namespace": namespace},
             "spec": {"accessModes": ["ReadWriteOnce"],
                      "resources": {"requests": {"storage": "0"}}}}
    with pytest.raises(kube.Refused, match="must be greater than zero"):
        kube.apply(claim)


@pytest.mark.usefixtures("operator_credentials")
def test_status_written_over_a_stale_read_is_refused(
    cluster: ClusterHandle, stackforge_crds: list[str]
) -> None:
    """What keeps a notification from going out twice: status.incidents is written only
    over the version the reconcile read."""
    from stackforge_operator import API_GROUP, API_VERSION
    from tests.support import tenants

    api = f"{API_GROUP}/{API_VERSION}"
    tenants.apply(cluster, tenants.small_tenant("guarded"))
    try:
        ns = tenants.namespace_of("guarded")
        read = kube.get(api, "StackForgeTenant", "guarded", ns)
        assert read is not None
        version = read["metadata"]["resourceVersion"]
        written = kube.patch_status(api, "StackForgeTenant", "guarded", ns,
                                    {"observedGeneration": 1}, resource_version=version)
        assert written["status"]["observedGeneration"] == 1
        with pytest.raises(kopf.TemporaryError, match="writing status of StackForgeTenant"):
            kube.patch_status(api, "StackForgeTenant", "guarded", ns,
                              {"observedGeneration": 2}, resource_version=version)
        # Unguarded writes (every other status field) are unchanged.
        unguarded = kube.patch_status(api, "StackForgeTenant", "guarded", ns,
                                      {"observedGeneration": 3})
        assert unguarded["status"]["observedGeneration"] == 3
    finally:
        tenants.discard(cluster, "guarded")
