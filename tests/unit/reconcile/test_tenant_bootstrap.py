"""When the dump's runner may start: the primary Ready on the template it wants now."""

from __future__ import annotations

from typing import Any

from stackforge_operator.reconcile.tenant_bootstrap import primary_ready


def _statefulset(generation: int, observed: int, ready: int, updated: int) -> dict[str, Any]:
    return {"metadata": {"generation": generation},
            "status": {"observedGeneration": observed, "readyReplicas": ready,
                       "updatedReplicas": updated}}


def test_the_runner_waits_for_a_ready_primary_of_the_current_template() -> None:
    assert primary_ready(_statefulset(2, 2, 1, 1))
    assert not primary_ready(None)
    assert not primary_ready({"metadata": {"generation": 1}})
    assert not primary_ready(_statefulset(2, 2, 0, 1))  # not Ready yet
    assert not primary_ready(_statefulset(3, 2, 1, 1))  # a change not seen yet
    assert not primary_ready(_statefulset(2, 2, 1, 0))  # Ready, but the old template's
