"""Every child of a tenant, in the order they are applied."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from stackforge_operator.builders import (
    apps,
    consul,
    credentials,
    exporters,
    ingress,
    kafka,
    kong,
    namespace,
    network,
    pdb,
    pooler,
    postgres,
    redis,
)
from stackforge_operator.builders.common import Manifest
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.models.tenant import TLSSpec

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet"})
ROTATION_TEMPLATE_ANNOTATION = credentials.ROTATION_HANDLED_ANNOTATION


def workloads(t: EffectiveTenant) -> list[Manifest]:
    return [*postgres.build(t), *pooler.build(t), *redis.build(t), *kafka.build(t),
            *consul.build(t), *kong.build(t), *apps.build(t)]


def desired_children(
    t: EffectiveTenant,
    *,
    secrets: Sequence[Manifest],
    tls: TLSSpec | None,
    rotation: str | None,
) -> list[Manifest]:
    """Namespace first (everything else lives in it), configuration before workloads."""
    stack = workloads(t)
    if rotation:
        stack = [_with_rotation(m, rotation) for m in stack]
    return [
        *namespace.build(t),
        *secrets,
        *network.build(t),
        *stack,
        *exporters.metrics_services(t),
        *pdb.build(t, stack),
        *ingress.build(t, tls),
    ]


def _with_rotation(manifest: Manifest, rotation: str) -> Manifest:
    """Workloads read credentials at start: a rotation must restart them, once."""
    if manifest["kind"] not in WORKLOAD_KINDS:
        return manifest
    rotated = copy.deepcopy(manifest)
    template_meta = rotated["spec"]["template"].setdefault("metadata", {})
    template_meta.setdefault("annotations", {})[ROTATION_TEMPLATE_ANNOTATION] = rotation
    return rotated


def by_key(manifests: Sequence[Manifest]) -> Mapping[tuple[str, str], Manifest]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}
