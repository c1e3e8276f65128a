"""kopf peering for several replicas: priorities and the ClusterKopfPeering CRD.

kopf lets only the live peer with the highest priority work; peers with the
*same* priority all pause (kopf cannot tell which should win), which would
leave the cluster unserved. Replicas of one Deployment share one pod
template, so they cannot be given distinct numbers by hand: ``--priority
auto`` draws one at random from a range large enough that two replicas
practically never collide (see docs/operator.md, High availability).
"""

from __future__ import annotations

import argparse
import random
from typing import Any, Final

AUTO: Final = "auto"
# 1 .. 2**31-1: fits every JSON/YAML reader (int32), and two draws collide
# with probability ~5e-10. Above 0, kopf's default, so a replica started by
# hand without --priority never outranks the Deployment's.
AUTO_RANGE: Final = (1, 2**31 - 1)

GROUP: Final = "kopf.dev"
PLURAL: Final = "clusterkopfpeerings"


def auto_priority(rng: random.Random | None = None) -> int:
    """A random priority in :data:`AUTO_RANGE` (from the OS's entropy by default)."""
    return (rng or random.SystemRandom()).randint(*AUTO_RANGE)


def parse_priority(text: str) -> int | str:
    """``--priority``: an integer, or ``auto`` (drawn when the operator starts)."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: an integer or {AUTO!r}") from None


def resolve_priority(value: int | str, rng: random.Random | None = None) -> int:
    """The priority to run with: ``auto`` drawn now, integers as given."""
    return auto_priority(rng) if value == AUTO else int(value)


def cluster_peering_crd() -> dict[str, Any]:
    """kopf's ClusterKopfPeering CRD, as kopf documents it (its peering.yaml).

    No status subresource, like kopf's own: kopf would then patch
    ``clusterkopfpeerings/status``, one more RBAC rule for nothing. ``status``
    is a free-form map of peer id -> record.
    """
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "stackforge"},
        },
        "spec": {
            "scope": "Cluster",
            "group": GROUP,
            "names": {
                "kind": "ClusterKopfPeering",
                "listKind": "ClusterKopfPeeringList",
                "plural": PLURAL,
                "singular": "clusterkopfpeering",
            },
            "versions": [{
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {
                    "description": "Peering of kopf-based operators: each running "
                                   "replica's priority and keep-alive, in status.",
                    "type": "object",
                    "properties": {
                        "status": {
                            "description": "Peer id -> {priority, lifetime, lastseen}, "
                                           "written by the operators themselves.",
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        },
                    },
                }},
            }],
        },
    }


def cluster_peering(name: str) -> dict[str, Any]:
    """The ClusterKopfPeering object the replicas peer through (kopf never creates it)."""
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterKopfPeering",
        "metadata": {"name": name},
    }
