"""A Deployment or StatefulSet is ready once its rollout is done: every replica
ready, made from the newest template, and none of an older template left."""

from __future__ import annotations

from typing import Any

import pytest

from stackforge_operator import status


def _app(*, ready: int, updated: int, replicas: int, wanted: int = 1) -> status.WorkloadState:
    desired = {"metadata": {"name": "api", "labels": {"app.kubernetes.io/component": "app"}}}
    live: dict[str, Any] = {
        "metadata": {"name": "api", "generation": 3},
        "spec": {"replicas": wanted},
        "status": {"observedGeneration": 3, "readyReplicas": ready, "replicas": replicas,
                   "updatedReplicas": updated}}
    return status.workload_state(desired, live)


def test_a_new_template_whose_pod_never_starts_is_not_ready_while_the_old_pod_serves() -> None:
    # maxSurge 1, maxUnavailable 0: the new pod exists (updated 1), the old one is
    # the Ready one (ready 1), two pods in all.
    state = _app(ready=1, updated=1, replicas=2)
    assert not state.ready
    assert state.message == "1/1 replicas ready, 1 updated, 1 of an older template left"


@pytest.mark.parametrize(("ready", "updated", "replicas", "wanted", "is_ready"), [
    (1, 1, 1, 1, True),    # rolled out
    (0, 1, 1, 1, False),   # the new pod not ready yet, the old one gone
    (2, 2, 3, 2, False),   # one old pod of three still there
    (2, 2, 2, 2, True),
    (3, 3, 3, 2, True),    # scaling down: extra pods of the newest template
    (2, 1, 2, 2, False),   # a StatefulSet halfway through its rolling update
])
def test_ready_only_when_rolled_out(ready: int, updated: int, replicas: int, wanted: int,
                                    is_ready: bool) -> None:
    assert _app(ready=ready, updated=updated, replicas=replicas,
                wanted=wanted).ready is is_ready
