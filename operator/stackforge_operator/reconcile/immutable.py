"""Fields the API server refuses to change in place, and what to do instead.

A StatefulSet's volumeClaimTemplates are immutable. Growing a component's
storage therefore keeps the live templates (so the apply is accepted) and
resizes each existing claim instead, which is how volumes really grow.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from stackforge_operator.builders import consul, kafka
from stackforge_operator.models.common import parse_quantity


@dataclass(frozen=True)
class ClaimResize:
    claim: str
    storage: str


def keep_live_claim_templates(
    desired: Mapping[str, Any], live: Mapping[str, Any]
) -> dict[str, Any]:
    """The desired StatefulSet carrying the live (immutable) volumeClaimTemplates."""
    # Copied only down to what changes (a deep copy was a tenth of an idle resync's CPU).
    kept = dict(desired)
    kept["spec"] = dict(desired["spec"])
    live_templates = (live.get("spec") or {}).get("volumeClaimTemplates")
    if live_templates is not None:
        kept["spec"]["volumeClaimTemplates"] = [
            {k: v for k, v in template.items() if k != "status"} for template in live_templates
        ]
    return kept


def grown_templates(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """Whether any claim template asks for more storage than the live StatefulSet has."""
    have = {
        t["metadata"]["name"]: t["spec"]["resources"]["requests"]["storage"]
        for t in (live.get("spec") or {}).get("volumeClaimTemplates") or []
    }
    return any(
        t["metadata"]["name"] in have
        and parse_quantity(t["spec"]["resources"]["requests"]["storage"])
        > parse_quantity(have[t["metadata"]["name"]])
        for t in desired["spec"].get("volumeClaimTemplates", [])
    )


def claims_of(
    statefulset: Mapping[str, Any], claims: Mapping[str, Mapping[str, Any]]
) -> Iterator[tuple[Mapping[str, Any], str, Mapping[str, Any]]]:
    """(template, claim name, claim) for each claim in ``claims`` (name -> live
    PersistentVolumeClaim) that a pod of this StatefulSet mounts or would: the
    StatefulSet controller names them ``<template>-<statefulset>-<ordinal>``.
    Template by template, claims by name."""
    name = statefulset["metadata"]["name"]
    for template in statefulset["spec"].get("volumeClaimTemplates") or []:
        prefix = f"{template['metadata']['name']}-{name}-"
        for claim_name, claim in sorted(claims.items()):
            if claim_name.startswith(prefix) and claim_name[len(prefix):].isdigit():
                yield template, claim_name, claim


def claim_resizes(
    desired: Mapping[str, Any], claims: Mapping[str, Mapping[str, Any]]
) -> list[ClaimResize]:
    """Claims of this StatefulSet whose requested size is below the desired one.

    ``claims`` maps claim name -> live PersistentVolumeClaim (claims_of).
    """
    resizes = []
    for template, claim_name, claim in claims_of(desired, claims):
        want = template["spec"]["resources"]["requests"]["storage"]
        have = claim["spec"]["resources"]["requests"]["storage"]
        if parse_quantity(want) > parse_quantity(have):
            resizes.append(ClaimResize(claim_name, want))
    return resizes


def consul_quorum_loss(desired: Mapping[str, Any], live: Mapping[str, Any]) -> str | None:
    """Why the desired Consul StatefulSet may not replace the live one, or None.

    Judged by the servers' configured count (``-bootstrap-expect``, which a
    suspension leaves as it is). The API server refuses ``consul.replicas``
    dropping below a majority (models/tenant.py); a count that drops without
    the field (a tier's default) is refused here.
    """
    want, have = _expected_servers(desired), _expected_servers(live)
    if want is None or have is None or want * 2 > have:
        return None
    return (f"Consul runs {have} servers and would keep {want}, fewer than a majority of "
            f"them: they would never elect a leader, so the change is not applied; set "
            f"spec.components.consul.replicas to {have} (or at least {have // 2 + 1}), or "
            f"create a new tenant")


def _expected_servers(statefulset: Mapping[str, Any]) -> int | None:
    for arg in _container(statefulset, consul.NAME).get("args") or []:
        if str(arg).startswith("-bootstrap-expect="):
            return int(str(arg).split("=", 1)[1])
    return None


def _env_value(statefulset: Mapping[str, Any], container: str, variable: str) -> str | None:
    for entry in _container(statefulset, container).get("env") or []:
        if entry.get("name") == variable:
            value = entry.get("value")
            return str(value) if value is not None else None
    return None


def _container(statefulset: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The pod template's container of that name ({} if none)."""
    for candidate in statefulset["spec"]["template"]["spec"].get("containers", []):
        if candidate.get("name") == name:
            found: Mapping[str, Any] = candidate
            return found
    return {}


def kafka_voters_change(desired: Mapping[str, Any], live: Mapping[str, Any]) -> str | None:
    """Why the desired Kafka StatefulSet may not replace the live one, or None.

    Its nodes' KRaft voter set is written into their log directories when the
    cluster forms; nodes started with another set would not agree on a quorum.
    The API server refuses a changed ``kafka.replicas`` (models/tenant.py); a
    count that changes without it (a tier's default) is refused here.
    """
    wanted = _env_value(desired, kafka.NAME, kafka.VOTERS_VARIABLE)
    running = _env_value(live, kafka.NAME, kafka.VOTERS_VARIABLE)
    if running is None or wanted is None or wanted == running:
        return None
    have, need = len(running.split(",")), len(wanted.split(","))
    return (f"Kafka runs with {have} nodes and would need {need}: the KRaft voter set is "
            f"fixed when the cluster forms, so the change is not applied; set "
            f"spec.components.kafka.replicas to {have} to keep this cluster, or create a new "
            f"tenant for another count")
