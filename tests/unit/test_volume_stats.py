"""Which nodes' kubelets a tenant's volume figures come from (volume_stats.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stackforge_operator import config, kube, rbac, volume_stats


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


def test_the_kubelets_are_shown_the_readers_token_renewed_before_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Never the operator's own token: a kubelet's node holds what it is sent. One
    token of the reader serves every read until a fifth of its life is left."""
    now = [datetime(2026, 12, 8, 1, 0, tzinfo=UTC)]
    requested: list[tuple[str, str, int]] = []
    shown: list[str] = []

    def token(namespace: str, name: str, seconds: int) -> kube.ServiceAccountToken:
        requested.append((namespace, name, seconds))
        return kube.ServiceAccountToken(f"reader-{len(requested)}",
                                        now[0] + timedelta(seconds=seconds))

    def summary(node: dict[str, Any], *, token: Callable[[], str],
                **_: Any) -> dict[str, Any]:
        shown.append(token())
        return {"node": {"nodeName": node["metadata"]["name"]}}

    class _Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> _Clock:  # noqa: ARG003 (always UTC here)
            return cls.fromtimestamp(now[0].timestamp(), UTC)

    monkeypatch.setattr(volume_stats, "datetime", _Clock)
    monkeypatch.setattr(kube, "service_account_token", token)
    monkeypatch.setattr(kube, "kubelet_stats_summary", summary)
    monkeypatch.setattr(kube, "get", lambda _v, _k, name: {"metadata": {"name": name}})
    monkeypatch.setenv("POD_NAMESPACE", "ops")
    volume_stats.forget()
    try:
        volume_stats._read("n1")
        now[0] += timedelta(seconds=479)  # 4/5 of 600 s: not yet
        volume_stats._read("n2")
        now[0] += timedelta(seconds=1)
        volume_stats._read("n1")
    finally:
        volume_stats.forget()
    assert requested == [("ops", rbac.KUBELET_READER, 600)] * 2
    assert shown == ["reader-1", "reader-1", "reader-2"]


def test_a_reader_that_cannot_get_a_token_says_why_in_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(namespace: str, name: str, seconds: int) -> kube.ServiceAccountToken:
        raise kube.Forbidden(f"requesting a token of ServiceAccount {namespace}/{name}: "
                             "forbidden: no", delay=60)

    monkeypatch.setattr(kube, "service_account_token", refused)
    monkeypatch.setattr(kube, "kubelet_stats_summary",
                        lambda _node, *, token, **_: token())
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.setattr(kube, "get", lambda _v, _k, name: {"metadata": {"name": name}})
    volume_stats.forget()
    try:
        answer = volume_stats._read("n1")
    finally:
        volume_stats.forget()
    assert answer == (f"requesting a token of ServiceAccount stackforge-system/"
                      f"{rbac.KUBELET_READER}: forbidden: no")
