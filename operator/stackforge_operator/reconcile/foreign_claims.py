"""Volume claims of another tenant that this tenant's StatefulSets would mount (pure).

Claims outlive their tenant (kept on purpose: the data is the customer's), and a
StatefulSet takes any claim of the right name in its namespace. So a tenant of
another name made in a namespace whose former tenant's claims are still there
started its PostgreSQL, Redis and Kafka on that tenant's data: its apps read the
other customer's rows, and its upkeep set its own passwords on their roles.

The StatefulSet controller labels each claim it makes with the set's selector,
whose ``stackforge.io/tenant`` names the tenant (builders/common.selector_labels).
A claim labelled with another tenant's name is refused; a claim without the label
(made by hand, or long ago) is taken as the tenant's own, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stackforge_operator import status
from stackforge_operator.builders.common import TENANT_LABEL
from stackforge_operator.reconcile import immutable

REASON = "ForeignVolumeClaims"


def foreign_claims(tenant: str, statefulset: Mapping[str, Any],
                   claims: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(claim, the tenant it is labelled with), sorted, for every claim in the
    namespace (``claims``: name -> claim) that ``statefulset`` would mount
    (immutable.claims_of) and that is labelled with a tenant other than ``tenant``."""
    found = []
    for _, name, claim in immutable.claims_of(statefulset, claims):
        owner = ((claim.get("metadata") or {}).get("labels") or {}).get(TENANT_LABEL)
        if owner and owner != tenant:
            found.append((name, owner))
    return sorted(found)


def may_take_claims(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """Whether applying StatefulSet ``desired`` may mount claims it has not had:
    it is made, or it gets more pods. (Asked only then, so a converged tenant
    never lists its namespace's claims.)"""
    if live is None:
        return True
    return int(desired["spec"].get("replicas", 1)) > int(live["spec"].get("replicas", 1))


def problem(tenant: str, found: list[tuple[str, str]]) -> status.Problem | None:
    if not found:
        return None
    named = ", ".join(f"{claim} (tenant {owner})" for claim, owner in found)
    return status.Problem(
        REASON,
        f"the volume claims {named} hold another tenant's data, and tenant {tenant}'s "
        "StatefulSets would mount them; nothing is applied until they are gone. Delete "
        "them if that data is not needed (it goes with them), make that tenant again to "
        "use them, or, to give the data to this tenant, label them "
        f"{TENANT_LABEL}={tenant}")
