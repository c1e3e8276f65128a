"""Pure: a tenant's usage for capacity planning and billing (the runbook's
"review usage"): what its pods request against its quota, from the namespace's
ResourceQuota (the API server's own count), what they use, from the metrics
API (metrics-server) when the cluster serves one, and what its volumes hold,
from the kubelets' statistics (``/stats/summary``) of the nodes they are on.

Figures are Kubernetes quantities as the quota writes them (``1500m``,
``3Gi``); measured ones are rounded to millicores and mebibytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from stackforge_operator.models.common import parse_quantity
from stackforge_operator.models.tenant import ResourceUsage, UsageStatus, VolumeUsage

# The quota's keys for each figure (builders/namespace.py sets them).
QUOTA_KEYS = {"cpu": "requests.cpu", "memory": "requests.memory",
              "storage": "requests.storage", "pods": "pods"}
_MI = Decimal(2**20)


def _millicores(value: Decimal) -> str:
    return f"{int((value * 1000).to_integral_value(ROUND_CEILING))}m"


def _mebibytes(value: Decimal) -> str:
    return f"{int((value / _MI).to_integral_value(ROUND_CEILING))}Mi"


def measured(pod_metrics: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(cpu, memory) the pods use now: the sum of their containers' samples."""
    cpu = memory = Decimal(0)
    for pod in pod_metrics:
        for container in pod.get("containers") or []:
            sample = container.get("usage") or {}
            cpu += parse_quantity(sample.get("cpu", "0"))
            memory += parse_quantity(sample.get("memory", "0"))
    return _millicores(cpu), _mebibytes(memory)


@dataclass(frozen=True)
class MeasuredClaims:
    """A namespace's claims as the kubelets measure them."""

    volumes: list[VolumeUsage]
    # Their sum, exact: each volume's figure is rounded up to a MiB, and a sum
    # of those would count up to a MiB too many per volume.
    used_bytes: int


def claims_in(summaries: Sequence[Mapping[str, Any]], namespace: str) -> MeasuredClaims:
    """The namespace's claims in the kubelets' summaries, by name. A claim mounted
    by several pods is one volume: its largest figure counts, once. Volumes
    without a claim (emptyDir, projected) are the pods' own, not storage."""
    used: dict[str, int] = {}
    capacity: dict[str, int] = {}
    for summary in summaries:
        for pod in summary.get("pods") or []:
            for volume in pod.get("volume") or []:
                claim = volume.get("pvcRef") or {}
                if claim.get("namespace") != namespace or not claim.get("name") \
                        or volume.get("usedBytes") is None:
                    continue
                name = claim["name"]
                used[name] = max(used.get(name, 0), int(volume["usedBytes"]))
                if volume.get("capacityBytes") is not None:
                    capacity[name] = max(capacity.get(name, 0), int(volume["capacityBytes"]))
    volumes = [VolumeUsage(claim=name, used=_mebibytes(Decimal(used[name])),
                           capacity=_mebibytes(Decimal(capacity[name])) if name in capacity
                           else None)
               for name in sorted(used)]
    return MeasuredClaims(volumes, sum(used.values()))


def usage(quota: Mapping[str, Any] | None, pod_metrics: Sequence[Mapping[str, Any]] | None,
          why_unmeasured: str | None, now: datetime,
          volumes: MeasuredClaims | None = None,
          why_volumes_unmeasured: str | None = None) -> UsageStatus:
    """``pod_metrics``: the metrics API's PodMetrics of the namespace, or None with
    ``why_unmeasured`` when the cluster serves none; ``volumes``: its claims as
    the kubelets measure them (claims_in), or None with ``why_volumes_unmeasured``."""
    state = (quota or {}).get("status") or {}
    hard, used = state.get("hard") or {}, state.get("used") or {}
    cpu = memory = None
    if pod_metrics is not None:
        cpu, memory = measured(pod_metrics)
    figures = {name: ResourceUsage(requested=used.get(key), quota=hard.get(key))
               for name, key in QUOTA_KEYS.items()}
    figures["cpu"].used, figures["memory"].used = cpu, memory
    if volumes is not None:
        figures["storage"].used = _mebibytes(Decimal(volumes.used_bytes))
    return UsageStatus(**figures, measured_by="metrics.k8s.io" if pod_metrics is not None
                       else None, unmeasured=why_unmeasured if pod_metrics is None else None,
                       volumes=list(volumes.volumes) if volumes is not None else [],
                       volumes_measured_by="kubelet" if volumes is not None else None,
                       volumes_unmeasured=why_volumes_unmeasured if volumes is None else None,
                       observed_at=now)


def measures_anything(usage: UsageStatus) -> bool:
    """Whether it holds a measured figure, which goes stale with time."""
    return usage.measured_by is not None or usage.volumes_measured_by is not None


def kept(old: UsageStatus | None, fresh: UsageStatus) -> UsageStatus:
    """What status.usage says now: ``old`` when ``fresh`` only repeats its quota
    counts with nothing measured. Nothing measured goes stale, and a new
    ``observedAt`` alone would be a status write per tenant at every refresh."""
    if old is not None and not measures_anything(fresh) and \
            old.model_copy(update={"observed_at": fresh.observed_at}) == fresh:
        return old
    return fresh
