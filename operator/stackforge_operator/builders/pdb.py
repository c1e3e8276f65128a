"""PodDisruptionBudgets that follow the workloads the other builders produce.

Policy: a workload that can run more than one pod gets ``maxUnavailable: 1``.

- ``maxUnavailable`` rather than ``minAvailable``: it stays right while the
  replica count moves (``kubectl scale``, an HPA) without rewriting the PDB,
  and with a single pod it still lets a node drain instead of blocking it.
- One at a time keeps a 3- or 5-member Kafka or Consul quorum alive. A quorum
  of an even count tolerates no more failures than the odd count below it:
  two Kafka controllers (or Consul servers) lose their quorum with one down,
  so their budget is ``maxUnavailable: 0`` (a drain waits for a person, as it
  should, rather than stopping the tenant's Kafka or Consul).
- None for single-pod workloads (nothing to keep available) nor while the
  tenant is suspended (nothing runs).
- An HPA-managed Deployment has no ``spec.replicas`` in its manifest; it is
  judged by the HPA's ``maxReplicas``, the most it can run.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from stackforge_operator.builders import apps, consul, kafka, kong, pooler, postgres, redis
from stackforge_operator.builders.common import Manifest
from stackforge_operator.models.effective import EffectiveTenant

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet"})


def workload_manifests(t: EffectiveTenant) -> list[Manifest]:
    """Every component builder's output: what :func:`build` reads by default."""
    out: list[Manifest] = []
    for module in (postgres, pooler, redis, kafka, consul, kong, apps):
        out += module.build(t)
    return out


def build(t: EffectiveTenant, manifests: Sequence[Manifest] | None = None) -> list[Manifest]:
    """One PDB per multi-pod workload in ``manifests`` (default: all of the tenant's)."""
    if t.suspend:
        return []
    objs = workload_manifests(t) if manifests is None else list(manifests)
    hpa_max = {
        m["spec"]["scaleTargetRef"]["name"]: int(m["spec"]["maxReplicas"])
        for m in objs
        if m["kind"] == "HorizontalPodAutoscaler"
    }
    out = []
    for m in objs:
        if m["kind"] not in WORKLOAD_KINDS:
            continue
        name = m["metadata"]["name"]
        count = m["spec"].get("replicas", hpa_max.get(name, 1))
        if count > 1:
            out.append(_budget(m, _unavailable(m, count)))
    return sorted(out, key=lambda p: str(p["metadata"]["name"]))


# Every pod of these StatefulSets votes (KRaft controllers, Consul servers).
QUORUMS = frozenset({("StatefulSet", kafka.NAME), ("StatefulSet", consul.NAME)})


def _unavailable(workload: Manifest, count: int) -> int:
    """How many of the workload's pods may be disrupted at once: one, or for a
    quorum no more than it survives losing (a majority must stay)."""
    if (workload["kind"], workload["metadata"]["name"]) in QUORUMS:
        return min(1, (count - 1) // 2)
    return 1


def _budget(workload: Manifest, max_unavailable: int) -> Manifest:
    meta: dict[str, Any] = copy.deepcopy(workload["metadata"])
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta,
        "spec": {
            "maxUnavailable": max_unavailable,
            "selector": copy.deepcopy(workload["spec"]["selector"]),
            # A pod that is not Ready protects nothing: let drains evict it
            # rather than wedge on a crash-looping replica.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
