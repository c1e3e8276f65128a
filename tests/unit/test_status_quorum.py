"""ConsulReady follows the Raft quorum: servers are ready while they know a leader
(builders/consul.py), and the component is ready while a majority is."""

from __future__ import annotations

from typing import Any

import pytest

from stackforge_operator import status


def _consul(ready: int, *, wanted: int = 3, updated: int | None = None) -> status.WorkloadState:
    desired = {"metadata": {"name": "consul",
                            "labels": {"app.kubernetes.io/component": "consul"}}}
    live: dict[str, Any] = {
        "metadata": {"name": "consul", "generation": 2},
        "spec": {"replicas": wanted},
        "status": {"observedGeneration": 2, "readyReplicas": ready, "replicas": wanted,
                   "updatedReplicas": wanted if updated is None else updated}}
    return status.workload_state(desired, live)


@pytest.mark.parametrize(("ready", "wanted", "is_ready"), [
    (3, 3, True), (2, 3, True), (1, 3, False), (0, 3, False),
    (1, 1, True), (0, 1, False), (3, 5, True), (2, 5, False),
])
def test_ready_while_a_majority_of_servers_knows_a_leader(ready: int, wanted: int,
                                                          is_ready: bool) -> None:
    assert _consul(ready, wanted=wanted).ready is is_ready


def test_a_degraded_quorum_is_ready_and_says_so() -> None:
    [observation] = status.component_observations([_consul(2)])
    assert (observation.type, observation.status.value) == ("ConsulReady", "True")
    assert "2/3 servers ready: quorum holds, degraded" in observation.message


def test_no_quorum_names_what_it_needs() -> None:
    [observation] = status.component_observations([_consul(1)])
    assert observation.status.value == "False"
    assert "1/3 servers ready (quorum needs 2)" in observation.message


def test_a_rollout_in_progress_is_not_ready_even_with_a_quorum() -> None:
    assert not _consul(3, updated=1).ready


def test_other_components_still_need_every_replica() -> None:
    desired = {"metadata": {"name": "kafka", "labels": {"app.kubernetes.io/component": "kafka"}}}
    live = {"metadata": {"name": "kafka", "generation": 1}, "spec": {"replicas": 3},
            "status": {"observedGeneration": 1, "readyReplicas": 2, "replicas": 3,
                       "updatedReplicas": 3}}
    assert not status.workload_state(desired, live).ready
