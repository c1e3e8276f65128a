"""Sandboxes whose DRDrill is gone.

A sandbox is a Namespace, cluster-scoped: a namespaced DRDrill cannot own it, so
the garbage collector never deletes it with its drill. A drill deleted mid-run
(or with a failed run kept for inspection) left its sandbox — a restored copy
of the tenant's data, a copy of the bucket's keys, a running database — until
another drill of the same namespace swept it after its expiry; with none, for
ever. Its drill's deletion now takes it (handlers.py, on the watch event), and
a periodic pass takes those whose drill went while no operator was watching.

A sandbox is an orphan when its drill (by the labels every sandbox carries)
does not exist, or exists with another uid (deleted and made again under its
name). The drill is read from the API server, not a watch cache: a run records
its sandbox in its drill's status before the sandbox exists, so a drill that
is really there is always seen, however new.
"""

from __future__ import annotations

import logging

from stackforge_operator import API_GROUP, API_VERSION, kube
from stackforge_operator.builders import drill as builders

logger = logging.getLogger(__name__)

API = f"{API_GROUP}/{API_VERSION}"


def drill_exists(namespace: str, name: str, uid: str | None) -> bool:
    """Whether DRDrill ``namespace/name`` is there, as the API server says now (not a
    watch cache: a run records its sandbox before making it), and is the one of
    ``uid`` (None: whichever); one made again under its name is another drill."""
    live = kube.get(API, "DRDrill", name, namespace, fresh=True)
    return live is not None and (uid is None or live["metadata"].get("uid") == uid)


def reap(drill_namespace: str | None = None, drill: str | None = None) -> list[str]:
    """Delete the orphaned sandboxes (of drill ``drill_namespace/drill`` only,
    when given); their names."""
    selector = builders.DRILL_LABEL
    if drill_namespace is not None and drill is not None:
        selector = (f"{builders.DRILL_LABEL}={drill},"
                    f"{builders.DRILL_NAMESPACE_LABEL}={drill_namespace}")
    reaped = []
    for sandbox in kube.list_objects("v1", "Namespace", label_selector=selector):
        meta = sandbox["metadata"]
        labels = meta.get("labels") or {}
        owner_namespace = labels.get(builders.DRILL_NAMESPACE_LABEL)
        owner = labels.get(builders.DRILL_LABEL)
        if meta.get("deletionTimestamp") or not owner or not owner_namespace:
            continue
        if drill_exists(owner_namespace, owner, labels.get(builders.DRILL_UID_LABEL)):
            continue  # its drill's own sweep keeps or deletes it
        if kube.delete("v1", "Namespace", meta["name"]):
            reaped.append(meta["name"])
            logger.info("deleted sandbox %s: its DRDrill %s/%s is gone", meta["name"],
                        owner_namespace, owner)
    return reaped
