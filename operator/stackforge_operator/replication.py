"""The read replicas' state for the tenant's status: lag, and the last re-clone.

The lag is what the primary sees in pg_stat_replication, read from its exporter
sidecar (our own query, builders/exporters.py; primary_metrics.py reads it). A re-clone
is read from the replica's pod: the liveness program that proves a replica can
never follow the primary again (images/postgres/stackforge-replica-follows.sh)
writes its proof into the container's termination message, which the kubelet
keeps in the pod's status until the next restart; the tenant's status keeps it
after that.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from stackforge_operator import primary_metrics
from stackforge_operator.builders.exporters import REPLICATION_LAG_METRIC
from stackforge_operator.builders.postgres import RECLONE_MESSAGE_PREFIX
from stackforge_operator.models.tenant import ReplicaStatus

logger = logging.getLogger(__name__)

SERVER_CONTAINER = "postgres"


@dataclass(frozen=True)
class Lag:
    state: str
    lag_bytes: int
    lag_seconds: float


def parse_lag(metrics_text: str) -> dict[str, Lag]:
    """Replica pod name -> its lag, from the primary exporter's metrics page."""
    values: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if not sample.name.startswith(f"{REPLICATION_LAG_METRIC}_lag_"):
                continue
            key = (sample.labels.get("replica", ""), sample.labels.get("state", ""))
            values.setdefault(key, {})[sample.name] = sample.value
    lags = {}
    for (replica, state), measured in sorted(values.items()):
        lag_bytes = measured.get(f"{REPLICATION_LAG_METRIC}_lag_bytes")
        lag_seconds = measured.get(f"{REPLICATION_LAG_METRIC}_lag_seconds")
        if not replica or lag_bytes is None or lag_seconds is None:
            continue
        lags[replica] = Lag(state, max(0, int(lag_bytes)), max(0.0, round(lag_seconds, 3)))
    return lags


def read_lag(primary_pod: Mapping[str, Any] | None) -> dict[str, Lag] | None:
    """The lag the primary's exporter serves now; None when it cannot be read."""
    page = primary_metrics.read(primary_pod)
    return None if page is None else parse_lag(page)


def last_reclone(pod: Mapping[str, Any]) -> tuple[datetime, str] | None:
    """When and why the pod's server was last restarted for a re-clone, if it was."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") != SERVER_CONTAINER:
            continue
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        message = str(terminated.get("message") or "").strip()
        finished = terminated.get("finishedAt")
        if message.startswith(RECLONE_MESSAGE_PREFIX) and finished:
            when = datetime.fromisoformat(str(finished).replace("Z", "+00:00"))
            return when, message.removeprefix(RECLONE_MESSAGE_PREFIX)
    return None


def replica_statuses(
    names: Sequence[str],
    lag: Mapping[str, Lag] | None,
    pods: Iterable[Mapping[str, Any]],
    previous: Sequence[ReplicaStatus],
) -> list[ReplicaStatus]:
    """One entry per desired replica pod (``names``), in that order.

    ``lag`` None (the exporter could not be read) leaves the lag unknown
    rather than claiming that nothing streams. A re-clone is kept once seen.
    """
    by_name = {str(p["metadata"]["name"]): p for p in pods}
    before = {r.name: r for r in previous}
    out = []
    for name in names:
        seen = before.get(name)
        reclone = last_reclone(by_name.get(name) or {})
        when, reason = reclone if reclone else (
            (seen.last_reclone_time, seen.last_reclone_reason) if seen else (None, None))
        if reclone and (seen is None or seen.last_reclone_time != when):
            logger.warning("replica %s was cloned anew from the primary: %s", name, reason)
        measured = (lag or {}).get(name)
        out.append(ReplicaStatus(
            name=name,
            streaming=None if lag is None else bool(measured and measured.state == "streaming"),
            state=measured.state if measured else None,
            lag_bytes=measured.lag_bytes if measured else None,
            lag_seconds=measured.lag_seconds if measured else None,
            last_reclone_time=when,
            last_reclone_reason=reason,
        ))
    return out
