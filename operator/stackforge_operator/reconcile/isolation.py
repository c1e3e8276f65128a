"""Closing the sessions that are open when a tenant's isolation starts.

The primary's upkeep sidecar closes the network sessions that began before
the isolation's ``sessions_before`` moment (its start plus the time the
NetworkPolicies take to refuse new connections), not every network session:
it reads the isolation from a ConfigMap file the kubelet refreshes up to a
minute late, and a sidecar closing every session while that file still says
"isolated" would end the sessions of a tenant whose isolation was lifted (a
backup, an app reconnecting). A session begun after the moment cannot be the
isolation's: the policies refused it, or it came after the lift, which is
reported only once the moment has passed. The operator also touches the
primary pod (``postgres.LIVE_FILES_ANNOTATION``) when its ConfigMap changes:
a pod update has the kubelet sync the pod, which writes its ConfigMap files
anew, so the sidecar learns of an isolation within seconds, not a minute.

The dataplane refuses new connections once the isolating NetworkPolicies are
in place, but lets established ones go on. Each component closes its own:
the primary's upkeep sidecar ends PostgreSQL's network sessions, Redis's pod is
replaced through its template (builders/redis.py). The rest cannot be rolled:
Kafka and Consul run quorums whose members talk over the flows isolation
removes, so a rolling replacement stalls on the first member that cannot
rejoin (tried: the open session outlived 400 s of it); a read replica is Ready
only while it streams from the primary, which isolation cuts, so a roll would
stall on the first replica too, and a replica has no sidecar to close its
readers' sessions. Their pods are deleted together instead, once: every pod
created before the isolation started. A replica's replacement starts from its
own volume (nothing is cloned) and streams again once the isolation is lifted.
The apps, Kong and the pooler are deleted the same way: a rolling replacement
would stall on the first new pod, which cannot reach the database under the
isolation to become Ready, and their open sessions are the likeliest to be an
intruder's (an app's outbound connection, a client's WebSocket through Kong).
They wait for the evidence bundle (tenant_evidence), which holds their logs,
within a bound (``spared``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from stackforge_operator import config
from stackforge_operator.builders import consul, kafka, kong, pooler, postgres
from stackforge_operator.builders.common import APP_COMPONENT, COMPONENT_LABEL
from stackforge_operator.models.common import Condition, ConditionStatus
from stackforge_operator.models.conditions import ISOLATED
from stackforge_operator.models.effective import Isolation

# Components whose pods are deleted all at once when isolation starts.
DELETED_WHEN_ISOLATED = (kafka.COMPONENT, consul.COMPONENT, postgres.REPLICA_COMPONENT,
                         kong.COMPONENT, pooler.COMPONENT, APP_COMPONENT)
# Of those, the ones whose logs the evidence bundle is for: deleted once it is
# written, or config.ISOLATION_EVIDENCE_WAIT_SECONDS into an isolation whose
# bundle cannot be written (no bucket, an outage); before this, an app's
# deleted pod took its logs with it.
KEPT_FOR_EVIDENCE = (kong.COMPONENT, pooler.COMPONENT, APP_COMPONENT)


def evidence_wait_ends(since: datetime) -> datetime:
    """When the pods of KEPT_FOR_EVIDENCE stop waiting for the bundle."""
    return since + timedelta(seconds=config.ISOLATION_EVIDENCE_WAIT_SECONDS)


def spared(evidence_written: bool, since: datetime, now: datetime) -> tuple[str, ...]:
    """The components whose pods wait for the evidence bundle now."""
    return () if evidence_written or now >= evidence_wait_ends(since) else KEPT_FOR_EVIDENCE


def isolated_since(conditions: Sequence[Condition], now: datetime) -> datetime:
    """When the isolation started: the Isolated condition's transition, or now
    when the condition (as last written) does not say True yet."""
    return _began(conditions) or now


def _began(conditions: Sequence[Condition]) -> datetime | None:
    """The transition of the Isolated condition while it says True."""
    for condition in conditions:
        if condition.type == ISOLATED and condition.status == ConditionStatus.TRUE:
            return condition.last_transition_time
    return None


def timed(conditions: Sequence[Condition], now: datetime) -> Isolation:
    """The isolation in force, begun when ``isolated_since`` says, in whole
    seconds: as the condition's transition is written and read back, so that
    the next pass finds the same moment (and writes nothing)."""
    since = isolated_since(conditions, now).replace(microsecond=0)
    return Isolation(since, sessions_before(since))


def sessions_before(since: datetime) -> datetime:
    """The moment before which a network session is the isolation's: ``since``
    plus the settle time, up to a whole second (the sidecar reads whole seconds)."""
    moment = since + timedelta(seconds=config.ISOLATION_SETTLE_SECONDS)
    return datetime.fromtimestamp(math.ceil(moment.timestamp()), UTC)


def lifting_until(isolate: bool, conditions: Sequence[Condition],
                  now: datetime) -> datetime | None:
    """While an isolation is being lifted: when the lift may be reported (its
    ``sessions_before`` moment). None when the tenant is isolated, or the lift
    may be reported now, or there was no isolation."""
    began = None if isolate else _began(conditions)
    if began is None:
        return None
    until = sessions_before(began)
    return until if now < until else None


def pods_to_replace(pods: Sequence[Mapping[str, Any]], since: datetime,
                    spare: Sequence[str] = ()) -> list[str]:
    """The pods of DELETED_WHEN_ISOLATED made before ``since`` (may hold sessions)
    that a workload makes again: a pod with no controller carrying such a label
    is not the operator's, and would be gone for good.

    Compared in whole seconds, as the API server records a pod's creation, and
    a pod made within the second the isolation started counts as made before
    it: it may have been, and opened a session before the policies held. Sparing
    it (as before) left such a pod's session open for the whole isolation. A
    replacement made within that second is deleted again, once or a few times
    until the second is over.
    """
    since = since.replace(microsecond=0) + timedelta(seconds=1)
    names = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        component = (meta.get("labels") or {}).get(COMPONENT_LABEL)
        if component not in DELETED_WHEN_ISOLATED or component in spare:
            continue
        if meta.get("deletionTimestamp"):
            continue
        if not any(owner.get("controller") for owner in meta.get("ownerReferences") or []):
            continue
        created = datetime.fromisoformat(str(meta["creationTimestamp"]).replace("Z", "+00:00"))
        if created < since:
            names.append(str(meta["name"]))
    return sorted(names)
