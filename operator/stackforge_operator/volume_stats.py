"""What a tenant's volumes hold, from the kubelets of the nodes its pods run on.

A kubelet's ``/stats/summary`` covers every pod of its node, so one read serves
every tenant there: each node's answer is kept ``KUBELET_STATS_SECONDS`` (60),
and a node whose kubelet could not be read is not asked again for
``KUBELET_STATS_RETRY_SECONDS`` (300) — a cluster whose kubelets the operator
cannot reach (a firewall, a fake node) costs one failed read per node per
five minutes, not one per tenant refresh. The kubelets are shown a token of
the kubelet reader (rbac.KUBELET_READER), never the operator's own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import kopf

from stackforge_operator import config, kube, rbac
from stackforge_operator import usage as tenant_usage
from stackforge_operator.builders import common

_lock = threading.Lock()
# node -> (monotonic time read, the summary, or why it could not be read)
_answers: dict[str, tuple[float, dict[str, Any] | str]] = {}
# The kubelet reader's token, and when to ask for a new one.
_token: tuple[str, datetime] | None = None


def nodes_with_claims(pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """The nodes running a pod that mounts a claim (pure)."""
    nodes = set()
    for pod in pods:
        spec = pod.get("spec") or {}
        if (pod.get("status") or {}).get("phase") == "Running" and spec.get("nodeName") and \
                any("persistentVolumeClaim" in v for v in spec.get("volumes") or []):
            nodes.add(spec["nodeName"])
    return sorted(nodes)


def _reader_token() -> str:
    """A token of the kubelet reader (rbac.KUBELET_READER), requested again when a
    fifth of its life is left: a kubelet given one about to expire could check it
    after it has."""
    global _token
    now = datetime.now(UTC)
    with _lock:
        held = _token
    if held is not None and now < held[1]:
        return held[0]
    granted = kube.service_account_token(
        common.operator_namespace(), rbac.KUBELET_READER, rbac.KUBELET_READER_TOKEN_SECONDS)
    renew = granted.expires - (granted.expires - now) / 5
    with _lock:
        _token = (granted.token, renew)
    return granted.token


def _read(node_name: str) -> dict[str, Any] | str:
    try:
        node = kube.get("v1", "Node", node_name)
        if node is None:
            return f"node {node_name} is gone"
        return kube.kubelet_stats_summary(
            node, token=_reader_token, ca_file=config.KUBELET_CA_FILE,
            insecure=config.KUBELET_INSECURE_TLS, timeout=config.KUBELET_TIMEOUT_SECONDS)
    except (kube.KubeletStatsError, kopf.TemporaryError) as error:
        # Volume figures are not worth failing a reconcile for (a Node not
        # readable, forbidden): status says why instead.
        return str(error)


def _summary(node_name: str) -> dict[str, Any] | str:
    now = time.monotonic()
    with _lock:
        held = _answers.get(node_name)
    if held is not None:
        read_at, answer = held
        keep = (config.KUBELET_STATS_RETRY_SECONDS if isinstance(answer, str)
                else config.KUBELET_STATS_SECONDS)
        if now - read_at < keep:
            return answer
    answer = _read(node_name)
    with _lock:
        now = time.monotonic()
        # Answers past their use go: a node gone (an autoscaler's churn) kept
        # its whole summary, every pod of it, for the operator's life.
        longest = max(config.KUBELET_STATS_SECONDS, config.KUBELET_STATS_RETRY_SECONDS)
        for node in [n for n, (read_at, _) in _answers.items() if now - read_at >= longest]:
            del _answers[node]
        _answers[node_name] = (now, answer)
    return answer


def claims(namespace: str, pods: Sequence[Mapping[str, Any]]
           ) -> tuple[tenant_usage.MeasuredClaims | None, str | None]:
    """(the namespace's claims as measured, None) or (None, why not measured)."""
    if not config.VOLUME_STATS:
        return None, "reading the kubelets' statistics is turned off (STACKFORGE_VOLUME_STATS)"
    nodes = nodes_with_claims(pods)
    if not nodes:
        return None, "no running pod mounts a volume claim"
    summaries, failures = [], []
    for node in nodes:
        answer = _summary(node)
        if isinstance(answer, str):
            failures.append(answer)
        else:
            summaries.append(answer)
    if failures:
        # Part of the volumes would be a figure too low: say why instead.
        return None, "; ".join(failures)[:256]
    return tenant_usage.claims_in(summaries, namespace), None


def forget() -> None:
    """Drop every kept answer and the token (tests)."""
    global _token
    with _lock:
        _answers.clear()
        _token = None
