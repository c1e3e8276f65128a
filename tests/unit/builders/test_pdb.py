from __future__ import annotations

from typing import Any

from stackforge_operator.builders import apps, kong, pdb
from tests.unit.builders.tenants import find, names, tenant, workloads

ENTERPRISE: dict[str, Any] = {"tier": "Enterprise"}


def test_a_budget_per_multi_pod_workload() -> None:
    budgets = pdb.build(tenant(ENTERPRISE))
    # Enterprise: 3 Kafka, 3 Consul, 3 Kong, 2 poolers, 2 read replicas;
    # api autoscales up to 6, web runs 2; postgres, redis and worker run one pod.
    assert names(budgets, "PodDisruptionBudget") == [
        "api",
        "consul",
        "kafka",
        "kong",
        "pooler",
        "postgres-replica",
        "web",
    ]


def test_budgets_match_their_workloads() -> None:
    t = tenant(ENTERPRISE)
    by_name = {w["metadata"]["name"]: w for w in workloads(pdb.workload_manifests(t))}
    for budget in pdb.build(t):
        assert budget["apiVersion"] == "policy/v1"
        workload = by_name[budget["metadata"]["name"]]
        assert budget["spec"]["selector"] == workload["spec"]["selector"]
        assert budget["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in budget["spec"]
        assert budget["metadata"]["labels"] == workload["metadata"]["labels"]


def test_none_when_suspended() -> None:
    assert pdb.build(tenant({**ENTERPRISE, "suspend": True})) == []


def test_single_replica_workloads_get_none() -> None:
    t = tenant({"components": {"kong": {"replicas": 1}}})
    assert "kong" not in names(pdb.build(t), "PodDisruptionBudget")
    t = tenant({"components": {"kong": {"replicas": 2}}})
    assert "kong" in names(pdb.build(t), "PodDisruptionBudget")


def test_autoscaled_app_judged_by_its_maximum() -> None:
    single = [
        {
            "name": "api",
            "image": "registry.example.com/a:1",
            "port": 80,
            "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 1},
        }
    ]
    t = tenant({"components": {"apps": single, "kong": {"replicas": 1}}})
    assert names(pdb.build(t), "PodDisruptionBudget") == []
    grows = [{**single[0], "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4}}]
    t = tenant({"components": {"apps": grows, "kong": {"replicas": 1}}})
    assert names(pdb.build(t), "PodDisruptionBudget") == ["api"]


def test_explicit_manifests_are_used_as_given() -> None:
    t = tenant(ENTERPRISE)
    only_kong = pdb.build(t, kong.build(t))
    assert names(only_kong, "PodDisruptionBudget") == ["kong"]
    assert find(only_kong, "PodDisruptionBudget", "kong") == find(
        pdb.build(t), "PodDisruptionBudget", "kong"
    )
    assert names(pdb.build(t, apps.build(t)), "PodDisruptionBudget") == ["api", "web"]


def test_a_quorum_is_never_disrupted_below_its_majority() -> None:
    """Two KRaft controllers lose their quorum with one down: the budget allowed a
    drain to take one. (Consul's server counts are 1, 3 or 5 already.)"""
    for replicas, allowed in ((2, 0), (3, 1), (4, 1), (5, 1)):
        t = tenant({"tier": "Growth", "components": {"kafka": {"replicas": replicas}}})
        budget = find(pdb.build(t), "PodDisruptionBudget", "kafka")
        assert budget["spec"]["maxUnavailable"] == allowed, replicas
    budgets = pdb.build(tenant(ENTERPRISE))
    assert find(budgets, "PodDisruptionBudget", "consul")["spec"]["maxUnavailable"] == 1
    assert find(budgets, "PodDisruptionBudget", "kong")["spec"]["maxUnavailable"] == 1
