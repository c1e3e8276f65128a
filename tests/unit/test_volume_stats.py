"""Which nodes' kubelets a tenant's volume figures come from (volume_stats.py)."""

from __future__ import annotations

from typing import Any

import pytest

from stackforge_operator import config, volume_stats


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


def test_answers_past_their_use_are_dropped_when_another_is_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A node gone (an autoscaler's churn) kept its whole summary for the
    operator's life."""
    volume_stats.forget()
    now = [1000.0]
    monkeypatch.setattr("stackforge_operator.volume_stats.time.monotonic", lambda: now[0])
    monkeypatch.setattr(volume_stats, "_read", lambda node: {"node": {"nodeName": node}})
    volume_stats._summary("gone")
    volume_stats._summary("failing")
    now[0] += max(config.KUBELET_STATS_SECONDS, config.KUBELET_STATS_RETRY_SECONDS)
    volume_stats._summary("new")
    assert set(volume_stats._answers) == {"new"}
    volume_stats.forget()
