"""Which nodes' kubelets a tenant's volume figures come from (volume_stats.py)."""

from __future__ import annotations

from typing import Any

from stackforge_operator import volume_stats


def _pod(node: str | None, phase: str, *volumes: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"volumes": list(volumes)}
    if node:
        spec["nodeName"] = node
    return {"spec": spec, "status": {"phase": phase}}


CLAIM = {"name": "data", "persistentVolumeClaim": {"claimName": "data-postgres-0"}}
EMPTY = {"name": "run", "emptyDir": {}}


def test_only_nodes_running_a_pod_with_a_claim_are_asked() -> None:
    pods = [_pod("b", "Running", CLAIM), _pod("a", "Running", EMPTY, CLAIM),
            _pod("c", "Running", EMPTY), _pod("d", "Pending", CLAIM),
            _pod(None, "Running", CLAIM), _pod("a", "Running", CLAIM), {}]
    assert volume_stats.nodes_with_claims(pods) == ["a", "b"]


def test_no_pod_with_a_claim_is_said_without_asking_any_kubelet() -> None:
    volume_stats.forget()
    assert volume_stats.claims("t", [_pod("c", "Running", EMPTY)]) == (
        None, "no running pod mounts a volume claim")
