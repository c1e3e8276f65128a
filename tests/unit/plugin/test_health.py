"""``kubectl stackforge health`` on a tenant whose workloads are not there.

(On the live stack, every check: tests/realnode/test_plugin.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stackforge_operator.plugin import health, health_checks

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "tenant-acme.yaml"


class NothingDeployed:
    """A cluster with the tenant object and none of its workloads (the tenant
    stalled before they were made, or they were deleted by hand)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def wanted_replicas(self, namespace: str, selector: str) -> int | None:
        self.asked.append((namespace, selector))
        return None

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.asked.append((namespace, selector))
        return []


def test_a_component_the_spec_has_and_the_cluster_lacks_fails() -> None:
    """It passed: "0 checks, all passed", exit 0, for a tenant with nothing running."""
    tenant = yaml.safe_load(EXAMPLE.read_text())
    tenant["metadata"].setdefault("namespace", "tenant-acme")
    tenant["spec"]["components"]["kafka"]["enabled"] = False
    cluster = NothingDeployed()
    rows = health.run(cluster, tenant)  # type: ignore[arg-type]
    assert {namespace for namespace, _ in cluster.asked} == {"tenant-acme"}
    failed = {(r.component, r.check) for r in rows if r.result == health_checks.FAIL}
    assert failed == {("postgres", "pods"), ("postgres-replica", "pods"), ("redis", "pods"),
                      ("consul", "pods"), ("kong", "pods"), ("app/api", "pods"),
                      ("app/web", "pods")}, rows
    # Off in the spec: no row.
    assert not [r for r in rows if r.component == "kafka"]
    assert all("not deployed" in r.detail for r in rows)
