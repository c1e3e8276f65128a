from __future__ import annotations

from typing import Any

from stackforge_operator.builders import consul, kafka
from stackforge_operator.reconcile.immutable import (
    ClaimResize,
    claim_resizes,
    consul_quorum_loss,
    grown_templates,
    kafka_voters_change,
    keep_live_claim_templates,
)
from tests.unit.builders.tenants import container, find, tenant


def _sts(storage: str) -> dict[str, Any]:
    return {
        "kind": "StatefulSet",
        "metadata": {"name": "postgres"},
        "spec": {
            "replicas": 2,
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": storage}}},
            }],
        },
    }


def _claim(storage: str) -> dict[str, Any]:
    return {"spec": {"resources": {"requests": {"storage": storage}}}}


def test_live_templates_replace_desired_ones_and_drop_their_status() -> None:
    live = _sts("20Gi")
    live["spec"]["volumeClaimTemplates"][0]["status"] = {"phase": "Pending"}
    kept = keep_live_claim_templates(_sts("50Gi"), live)
    template = kept["spec"]["volumeClaimTemplates"][0]
    assert template["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert "status" not in template
    assert kept["spec"]["replicas"] == 2


def test_growth_is_detected_by_value_not_spelling() -> None:
    assert grown_templates(_sts("50Gi"), _sts("20Gi"))
    assert not grown_templates(_sts("20480Mi"), _sts("20Gi"))
    assert not grown_templates(_sts("10Gi"), _sts("20Gi"))


def test_only_this_statefulsets_smaller_claims_are_resized() -> None:
    claims = {
        "data-postgres-0": _claim("20Gi"),
        "data-postgres-1": _claim("50Gi"),
        "data-postgres-replica-0": _claim("20Gi"),  # another StatefulSet's claim
        "other-postgres-0": _claim("1Gi"),
    }
    assert claim_resizes(_sts("50Gi"), claims) == [ClaimResize("data-postgres-0", "50Gi")]


def _kafka(nodes: int) -> dict[str, Any]:
    return find(kafka.build(tenant({"components": {"kafka": {"enabled": True,
                                                             "replicas": nodes}}})),
                "StatefulSet", "kafka")


def test_the_same_kafka_voters_are_no_change() -> None:
    assert kafka_voters_change(_kafka(3), _kafka(3)) is None


def test_a_kafka_node_count_change_is_refused_with_the_count_to_keep() -> None:
    message = kafka_voters_change(_kafka(1), _kafka(3))
    assert message is not None
    assert "runs with 3 nodes and would need 1" in message
    assert "set spec.components.kafka.replicas to 3" in message
    assert kafka_voters_change(_kafka(5), _kafka(3)) is not None


def test_a_live_statefulset_without_voters_is_not_judged() -> None:
    # (An object another tool wrote, or one from before the variable existed.)
    live = _kafka(3)
    container(live, "kafka")["env"] = []
    assert kafka_voters_change(_kafka(1), live) is None


def _consul(servers: int, **spec: Any) -> dict[str, Any]:
    return find(consul.build(tenant({"components": {"consul": {"enabled": True,
                                                               "replicas": servers}},
                                     **spec})), "StatefulSet", "consul")


def test_consul_dropping_below_a_majority_of_its_servers_is_refused() -> None:
    """A tier's default (Enterprise's 3 to Growth's 1) took the servers below a
    majority of their Raft configuration: no leader, for good."""
    message = consul_quorum_loss(_consul(1), _consul(3))
    assert message is not None and "runs 3 servers and would keep 1" in message
    assert consul_quorum_loss(_consul(1), _consul(5)) is not None
    for fine in ((3, 5), (3, 3), (3, 1), (5, 3)):
        assert consul_quorum_loss(_consul(fine[0]), _consul(fine[1])) is None, fine
    # A suspended tenant runs none but keeps its count.
    assert consul_quorum_loss(_consul(3, suspend=True), _consul(3)) is None
