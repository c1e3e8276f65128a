"""Claims of another tenant that a tenant's StatefulSets would mount
(reconcile/foreign_claims.py)."""

from __future__ import annotations

from typing import Any

from stackforge_operator.builders import stack
from stackforge_operator.builders.common import TENANT_LABEL
from stackforge_operator.reconcile import foreign_claims
from tests.unit.builders.tenants import ENTERPRISE, tenant


def _claim(name: str, owner: str | None) -> dict[str, Any]:
    labels = {TENANT_LABEL: owner} if owner else {}
    return {"metadata": {"name": name, "labels": labels}}


def _stateful_sets() -> list[dict[str, Any]]:
    t = tenant(ENTERPRISE)
    return [m for m in stack.desired_children(t, secrets=[], tls=None, rotation=None)
            if m["kind"] == "StatefulSet"]


def test_claims_labelled_with_another_tenant_are_named_with_it() -> None:
    desired = _stateful_sets()
    name = tenant(ENTERPRISE).name
    claims = [
        _claim("data-postgres-0", "former"),      # the primary's: would be mounted
        _claim("data-redis-0", "former"),
        _claim("data-postgres-7", "former"),      # a later pod's claim: mounted once it exists
        _claim("data-kafka-1", name),             # its own
        _claim("data-consul-0", None),            # unlabelled: taken as its own, as before
        _claim("scratch-postgres-0", "former"),   # no template of that name
        _claim("data-postgres", "former"),        # not a pod's claim
    ]
    by_name = {c["metadata"]["name"]: c for c in claims}
    found = sorted(f for statefulset in desired
                   for f in foreign_claims.foreign_claims(name, statefulset, by_name))
    assert found == [("data-postgres-0", "former"), ("data-postgres-7", "former"),
                     ("data-redis-0", "former")]
    problem = foreign_claims.problem(name, found)
    assert problem is not None and problem.reason == "ForeignVolumeClaims"
    assert "data-postgres-0 (tenant former)" in problem.message
    assert f"label them {TENANT_LABEL}={name}" in problem.message
    assert foreign_claims.problem(name, []) is None


def test_only_a_set_made_or_given_more_pods_may_take_claims() -> None:
    [postgres] = [s for s in _stateful_sets() if s["metadata"]["name"] == "postgres"]
    live = {"spec": {**postgres["spec"]}}
    assert foreign_claims.may_take_claims(postgres, None)
    assert not foreign_claims.may_take_claims(postgres, live)
    fewer = {"spec": {**postgres["spec"], "replicas": postgres["spec"]["replicas"] - 1}}
    assert foreign_claims.may_take_claims(postgres, fewer)
