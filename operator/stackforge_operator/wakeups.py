"""Which reconcile a change to one of the operator's objects wakes (pure).

The informers (cached_kinds.py) see every change to the operator's objects:
a tenant's children, a policy's backup Jobs, a drill's sandbox. Each change
wakes its owner's reconcile at once, so a deleted Deployment is made again
without waiting for a resync. Only objects with the operator's label count;
pods never do (their status moves all the time, and a reconcile reads them
only when a workload is not ready, which their workload's own change tells).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from stackforge_operator.builders.backup import POLICY_LABEL
from stackforge_operator.builders.common import MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL
from stackforge_operator.builders.drill import DRILL_LABEL, DRILL_NAMESPACE_LABEL

Owner = Literal["tenant", "backup", "drill"]


def owners(kind: str, meta: Mapping[str, Any]) -> list[tuple[Owner, str]]:
    """(owner kind, owner key "namespace/name") for each reconcile to wake."""
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or kind == "Pod":
        return []
    found: list[tuple[Owner, str]] = []
    tenant = labels.get(TENANT_LABEL)
    if tenant:
        # A tenant's children live in its namespace; its Namespace is named so.
        found.append(("tenant", f"{meta.get('namespace') or meta.get('name')}/{tenant}"))
    policy = labels.get(POLICY_LABEL)
    if policy and kind == "Job":
        found.append(("backup", f"{meta.get('namespace')}/{policy}"))
    drill, drill_namespace = labels.get(DRILL_LABEL), labels.get(DRILL_NAMESPACE_LABEL)
    if drill and drill_namespace and kind in ("Job", "StatefulSet"):
        # The sandbox is a namespace of its own; the drill lives beside its tenant.
        found.append(("drill", f"{drill_namespace}/{drill}"))
    return found
